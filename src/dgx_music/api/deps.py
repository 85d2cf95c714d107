"""Dependencies of the route handlers, as ``Annotated`` aliases.

They are ``async`` because none of them waits on anything (the database is opened once per
process, in a worker thread): FastAPI runs a plain ``def`` dependency in the thread pool, and
the hop there and back cost more than the dependency itself, several times per request.
"""

from __future__ import annotations

import secrets
import uuid
from typing import Annotated

from fastapi import Depends, HTTPException, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from dgx_music.api.config import ApiSettings
from dgx_music.api.metrics import ServiceMetrics
from dgx_music.api.schemas import EXAMPLE_ID
from dgx_music.api.workers import WorkerPool
from dgx_music.config import Settings
from dgx_music.generation.engine import MusicEngine, get_engine
from dgx_music.jobs.queue import JobManager
from dgx_music.storage.database import get_database, opened_database


async def get_settings_of_app(request: Request) -> Settings:
    return request.app.state.settings


async def get_api_settings(request: Request) -> ApiSettings:
    return request.app.state.api_settings


async def get_metrics(request: Request) -> ServiceMetrics:
    return request.app.state.metrics


async def get_worker_pool(request: Request) -> WorkerPool | None:
    return request.app.state.worker_pool


SettingsDep = Annotated[Settings, Depends(get_settings_of_app)]
ApiSettingsDep = Annotated[ApiSettings, Depends(get_api_settings)]
MetricsDep = Annotated[ServiceMetrics, Depends(get_metrics)]
WorkerPoolDep = Annotated[WorkerPool | None, Depends(get_worker_pool)]


async def get_manager(settings: SettingsDep) -> JobManager:
    """The queue over the application's database (opened, and migrated, on first use).

    Raises
    ------
    DatabaseUnavailableError
        The database cannot be reached; the client gets 503.
    """
    database = opened_database(settings)
    if database is None:
        # Connecting (and migrating) blocks: not on the event loop. Until it succeeds, every
        # request tries again, so a database that comes up later is found.
        database = await run_in_threadpool(get_database, settings)
    return JobManager(database, settings=settings)


async def get_music_engine() -> MusicEngine:
    return get_engine()


ManagerDep = Annotated[JobManager, Depends(get_manager)]
EngineDep = Annotated[MusicEngine, Depends(get_music_engine)]

#: The ``Authorization: Bearer <key>`` scheme, as documented in the OpenAPI schema.
bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="Needed by mutating routes and audio downloads when the server sets "
    "DGX_MUSIC_API_KEY.",
)


async def require_api_key(
    api_settings: ApiSettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> None:
    """Refuse the request with 401 unless it carries the configured key (if one is set)."""
    if api_settings.api_key is None:
        return
    expected = api_settings.api_key.get_secret_value().encode()
    given = credentials.credentials.encode() if credentials is not None else b""
    if not secrets.compare_digest(given, expected):
        raise HTTPException(
            status_code=401,
            detail="this server needs an API key: send Authorization: Bearer <key>"
            if credentials is None
            else "the API key is wrong",
            headers={"WWW-Authenticate": "Bearer"},
        )


#: A generation id in a path. Anything that is not a UUID gets 422, naming the field.
GenerationId = Annotated[
    uuid.UUID,
    Path(description="The generation's id (a UUID).", examples=[EXAMPLE_ID]),
]
