"""``/metrics``: Prometheus text exposition."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse

from dgx_music import __version__
from dgx_music.api import metrics
from dgx_music.api.deps import MetricsDep, SettingsDep, WorkerPoolDep
from dgx_music.errors import DgxMusicError
from dgx_music.gpu import gpu_status
from dgx_music.jobs.queue import JobManager
from dgx_music.storage.database import get_database

router = APIRouter(prefix="/metrics", tags=["service"])


@router.get(
    "",
    response_class=PlainTextResponse,
    responses={
        200: {
            "description": "Prometheus text format 0.0.4: jobs by status, queue depth, "
            "generation-time histograms, GPU memory."
        }
    },
)
def read_metrics(
    settings: SettingsDep, observed: MetricsDep, pool: WorkerPoolDep
) -> PlainTextResponse:
    """Metrics in the Prometheus text format; the database being down is a metric, not an error."""
    try:
        counts = JobManager(get_database(settings), settings=settings).counts_by_status()
    except DgxMusicError:
        counts = None
    snapshot = metrics.Snapshot(
        version=__version__,
        counts=counts,
        gpus=gpu_status(),
        workers=pool.concurrency if pool is not None else 0,
        workers_running=pool is not None and pool.running,
    )
    return PlainTextResponse(metrics.render(observed, snapshot), media_type=metrics.CONTENT_TYPE)
