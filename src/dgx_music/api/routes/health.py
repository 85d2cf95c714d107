"""``/health``: is the service able to take and run jobs."""

from __future__ import annotations

from fastapi import APIRouter, Response

from dgx_music.api import status
from dgx_music.api.deps import EngineDep, SettingsDep, WorkerPoolDep
from dgx_music.api.schemas import HealthPublic

router = APIRouter(prefix="/health", tags=["service"])


@router.get(
    "",
    response_model=HealthPublic,
    responses={503: {"model": HealthPublic, "description": "The database cannot be reached."}},
)
def read_health(
    settings: SettingsDep, engine: EngineDep, pool: WorkerPoolDep, response: Response
) -> HealthPublic:
    """Database, engine/device and queue depth; 503 when the database is down."""
    health = status.check_health(settings, engine, pool)
    if health.status == "unavailable":
        response.status_code = 503
    return health
