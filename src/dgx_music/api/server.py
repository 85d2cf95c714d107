"""``dgx-music serve``: the application under uvicorn, with its workers in the same process."""

from __future__ import annotations

import logging

import uvicorn

from dgx_music.api.app import create_app
from dgx_music.api.config import ApiSettings
from dgx_music.config import get_settings

logger = logging.getLogger(__name__)


def serve(host: str | None = None, port: int | None = None, workers: int | None = None) -> None:
    """Serve the API and the page until SIGINT or SIGTERM.

    Parameters
    ----------
    host
        Address to bind; ``DGX_MUSIC_HOST`` or 127.0.0.1 by default. Binding another address
        exposes the service to the network: set ``DGX_MUSIC_API_KEY`` then.
    port
        TCP port; ``DGX_MUSIC_PORT`` or 8000 by default.
    workers
        Worker threads run in this process; ``DGX_MUSIC_WORKER_CONCURRENCY`` by default. 0 runs
        none: jobs then wait for ``dgx-music worker`` processes.

    On shutdown uvicorn stops taking requests, and the workers finish their running jobs (or
    release them back to the queue after the grace period) before the process exits.
    """
    settings = get_settings()
    if workers is not None:
        settings = settings.model_copy(update={"worker_concurrency": workers})
    api_settings = ApiSettings()
    host = host or api_settings.host
    port = api_settings.port if port is None else port
    if host not in {"127.0.0.1", "localhost", "::1"} and not api_settings.auth_required:
        logger.warning(
            "serving on %s without DGX_MUSIC_API_KEY: anyone who can reach it may submit and "
            "delete generations",
            host,
            extra={"action": "serve"},
        )
    app = create_app(settings, start_workers=True, api_settings=api_settings)
    try:
        uvicorn.run(app, host=host, port=port, log_level="info")
    finally:
        # uvicorn skips the application's shutdown when told twice to stop; the workers must
        # still stop claiming and give their jobs back, or the process never ends.
        pool = app.state.worker_pool
        if pool is not None:
            pool.stop()
