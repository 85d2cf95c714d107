"""What the service says about itself: health, limits, models, and the metrics' snapshot.

Like :mod:`dgx_music.api.service`, nothing here knows about HTTP; the routes of ``/health``,
``/info``, ``/models`` and ``/metrics`` call these.
"""

from __future__ import annotations

from dgx_music import __version__
from dgx_music.api.config import ApiSettings
from dgx_music.api.metrics import Snapshot
from dgx_music.api.schemas import (
    DatabaseHealth,
    EngineHealth,
    GpuPublic,
    HealthPublic,
    InfoPublic,
    ModelPublic,
    ModelsPublic,
    QueueHealth,
    WorkersHealth,
)
from dgx_music.api.workers import WorkerPool
from dgx_music.config import Settings
from dgx_music.errors import DgxMusicError
from dgx_music.generation.continuation import MAX_CONTINUE_SECONDS
from dgx_music.generation.engine import MusicEngine, choose_device
from dgx_music.generation.request import MAX_SEED
from dgx_music.gpu import gpu_status
from dgx_music.jobs.queue import JobManager
from dgx_music.jobs.records import JobStatus
from dgx_music.storage.database import get_database


def list_models(engine: MusicEngine, settings: Settings) -> ModelsPublic:
    models = [
        ModelPublic(
            name=model.name,
            kind=model.kind,
            available=model.available_offline,
            default=model.name == settings.default_model,
        )
        for model in engine.available_models()
    ]
    return ModelsPublic(data=models, count=len(models), default_model=settings.default_model)


def service_info(settings: Settings, api_settings: ApiSettings) -> InfoPublic:
    return InfoPublic(
        version=__version__,
        default_model=settings.default_model,
        max_duration=settings.max_duration,
        context_seconds=settings.context_seconds,
        max_continue_seconds=MAX_CONTINUE_SECONDS,
        max_prompt_length=settings.max_prompt_length,
        max_seed=MAX_SEED,
        auth_required=api_settings.auth_required,
        max_body_bytes=api_settings.max_body_bytes,
    )


def check_health(settings: Settings, engine: MusicEngine, pool: WorkerPool | None) -> HealthPublic:
    """Database, engine and queue facts; ``status`` is ``unavailable`` without a database and
    ``degraded`` when the engine cannot run the default model."""
    database = DatabaseHealth(ok=False, backend=None)
    queue = QueueHealth(depth=None, processing=None)
    try:
        manager = JobManager(get_database(settings), settings=settings)
        database.backend = manager.database.backend
        counts = manager.counts_by_status()
    except DgxMusicError as exc:
        database.error = exc.message
    else:
        database.ok = True
        queue = QueueHealth(
            depth=counts[JobStatus.PENDING], processing=counts[JobStatus.PROCESSING]
        )

    engine_health = EngineHealth(
        ok=True,
        device=None,
        default_model=settings.default_model,
        default_model_available=False,
        gpus=[GpuPublic(**vars(gpu)) for gpu in gpu_status()],
    )
    try:
        engine_health.device = choose_device(settings.device)
    except DgxMusicError as exc:
        engine_health.ok = False
        engine_health.error = exc.message
    available = {model.name for model in engine.available_models() if model.available_offline}
    engine_health.default_model_available = settings.default_model in available
    if not engine_health.default_model_available and engine_health.ok:
        engine_health.error = f"the default model {settings.default_model} is not installed"

    workers = WorkersHealth(
        configured=pool.concurrency if pool is not None else 0,
        running=pool is not None and pool.running,
    )
    if not database.ok:
        status = "unavailable"
    elif not engine_health.ok or not engine_health.default_model_available:
        status = "degraded"
    else:
        status = "ok"
    return HealthPublic(
        status=status,
        version=__version__,
        database=database,
        engine=engine_health,
        queue=queue,
        workers=workers,
    )


def read_snapshot(settings: Settings, pool: WorkerPool | None) -> Snapshot:
    """What a metrics scrape reads now: jobs by status (``None`` when the database is down),
    GPU memory, and this process's workers."""
    try:
        counts = JobManager(get_database(settings), settings=settings).counts_by_status()
    except DgxMusicError:
        counts = None
    return Snapshot(
        version=__version__,
        counts=counts,
        gpus=gpu_status(),
        workers=pool.concurrency if pool is not None else 0,
        workers_running=pool is not None and pool.running,
    )
