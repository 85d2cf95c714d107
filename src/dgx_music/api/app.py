"""The FastAPI application: routers, error handlers, middleware, the page, in-process workers.

Routes live under :data:`~dgx_music.api.schemas.API_PREFIX` (``/api/v1``); the page is at ``/``
and its script and style under ``/static``. Malformed generation ids in paths get 422 (naming
the ``generation_id`` field), well-formed ids that match nothing get 404.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio.to_thread
from fastapi import APIRouter, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from fastapi.staticfiles import StaticFiles

from dgx_music import __version__
from dgx_music.api import status
from dgx_music.api.config import ApiSettings
from dgx_music.api.errors import install_error_handlers
from dgx_music.api.metrics import ServiceMetrics
from dgx_music.api.middleware import BodySizeLimitMiddleware
from dgx_music.api.routes import generations, health, info, metrics, models, web
from dgx_music.api.schemas import API_PREFIX
from dgx_music.api.workers import WorkerPool
from dgx_music.config import Settings, get_settings
from dgx_music.generation.engine import model_choices

DESCRIPTION = """\
Text to music on this machine: submit a prompt, follow the job, download the WAV.

A submission is queued (`202` with a `Location` header); workers generate the audio,
loudness-normalise it to -16 LUFS and measure tempo, key and loudness. Poll the generation until
its `status` is `completed`, `failed` or `cancelled`.

Errors have one body shape, `ErrorPublic`; invalid input gets `422` with one entry per field.
When the server sets `DGX_MUSIC_API_KEY`, `POST` and `DELETE` routes and audio downloads need
`Authorization: Bearer <key>`.
"""

TAGS = [
    {"name": "generations", "description": "Submit, follow, download and delete generations."},
    {"name": "service", "description": "Health, metrics, models and limits."},
]


def create_app(
    settings: Settings | None = None,
    *,
    start_workers: bool = True,
    api_settings: ApiSettings | None = None,
) -> FastAPI:
    """Build the application.

    Parameters
    ----------
    settings
        Database, outputs and worker settings; the process settings by default. Request limits
        (prompt length, duration) are always the process settings', which the request validator
        reads.
    start_workers
        Run ``settings.worker_concurrency`` workers in this process while the application runs
        (none when it is 0). Without them, jobs wait for ``dgx-music worker`` processes.
    api_settings
        Key, CORS and body limit; read from the environment by default.
    """
    settings = settings or get_settings()
    api_settings = api_settings or ApiSettings()
    pool: WorkerPool | None = None
    observed = ServiceMetrics(lambda: status.read_snapshot(settings, pool))
    if start_workers and settings.worker_concurrency > 0:
        pool = WorkerPool(
            settings, settings.worker_concurrency, on_finished=observed.observe_finished
        )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if pool is not None:
            pool.start()
        try:
            yield
        finally:
            if pool is not None:
                await anyio.to_thread.run_sync(pool.stop)

    app = FastAPI(
        title="dgx-music",
        version=__version__,
        description=DESCRIPTION,
        openapi_tags=TAGS,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.api_settings = api_settings
    app.state.metrics = observed
    app.state.worker_pool = pool

    api = APIRouter(prefix=API_PREFIX)
    for module in (generations, models, info, health, metrics):
        api.include_router(module.router)
    app.include_router(api)
    app.include_router(web.router)
    app.mount("/static", StaticFiles(directory=web.WEB_DIR), name="static")

    install_error_handlers(app)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=api_settings.max_body_bytes)
    if api_settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=api_settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Range", "If-None-Match"],
            expose_headers=["Location", "ETag", "Content-Range", "Accept-Ranges"],
        )

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
                tags=app.openapi_tags,
            )
            document_limits(schema, get_settings())
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def document_limits(schema: dict[str, Any], settings: Settings) -> None:
    """Write the configured request limits into the ``GenerationCreate`` schema.

    The request validator enforces them; the schema states them (and the model names the API
    accepts) so clients and property-based tests generate requests the server accepts.
    """
    properties = schema["components"]["schemas"]["GenerationCreate"]["properties"]
    properties["prompt"].update(minLength=1, maxLength=settings.max_prompt_length)
    properties["duration"].update(exclusiveMinimum=0, maximum=settings.max_duration)
    model = properties["model"]
    for option in model.get("anyOf", [model]):
        if option.get("type") == "string":
            option["enum"] = model_choices()
