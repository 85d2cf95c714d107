"""Fixtures shared by every test: isolated settings and directories, fixed torch threads."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# Never reach for the Hugging Face hub, whatever the caller's environment says.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import torch  # after the offline switches

from dgx_music.config import get_settings

# One thread is the fastest and the steadiest for the tiny model on a small CPU.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _isolated_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test gets its own data and output directories and freshly read settings."""
    for name in list(os.environ):
        if name.startswith("DGX_MUSIC_") and name != "DGX_MUSIC_TEST_PG_URL":
            monkeypatch.delenv(name)
    monkeypatch.setenv("DGX_MUSIC_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DGX_MUSIC_OUTPUT_DIR", str(tmp_path / "outputs"))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def temp_dir(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture
def output_dir(temp_dir: Path) -> Path:
    path = temp_dir / "outputs"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture
def data_dir(temp_dir: Path) -> Path:
    path = temp_dir / "data"
    path.mkdir(exist_ok=True)
    return path


# --- Databases, for the storage, queue and job tests ------------------------------------------
# One parametrised fixture runs each test on SQLite (a fresh file per test) and on PostgreSQL
# (one migrated database per session, emptied before each test). PostgreSQL tests skip only when
# DGX_MUSIC_TEST_PG_URL is unset.

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(autouse=True)
def _close_databases() -> Iterator[None]:
    """Dispose of the engines a test opened through ``get_database``."""
    yield
    from dgx_music.storage.database import close_databases

    close_databases()


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    from tests.utils import pg

    url = pg.admin_url()
    if url is None:
        pytest.skip(f"{pg.PG_URL_VARIABLE} is not set: no PostgreSQL server to test against")
    return url


@pytest.fixture(scope="session")
def pg_session_url(pg_admin_url: str) -> Iterator[str]:
    """A migrated PostgreSQL database shared by the session, dropped at its end."""
    from dgx_music.storage.database import Database, upgrade
    from tests.utils import pg

    with pg.temporary_database(pg_admin_url) as url:
        database = Database(url)
        upgrade(database)
        database.dispose()
        yield url


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty, migrated database (SQLite: migrated on first open)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'data' / 'dgx_music.db'}"
    from dgx_music.storage.database import Database
    from tests.utils.db_helpers import truncate_all

    url = request.getfixturevalue("pg_session_url")
    database = Database(url)
    truncate_all(database)
    database.dispose()
    return url


@pytest.fixture
def database(database_url: str, monkeypatch: pytest.MonkeyPatch):
    """The process database for this test (``DGX_MUSIC_DATABASE_URL`` points at it too)."""
    from dgx_music.storage.database import get_database

    monkeypatch.setenv("DGX_MUSIC_DATABASE_URL", database_url)
    get_settings.cache_clear()
    return get_database()


@pytest.fixture
def manager(database):
    """A job manager over ``database`` with the test's output directory."""
    from dgx_music.jobs.queue import JobManager

    return JobManager(database)


@pytest.fixture(scope="session")
def warm_metadata() -> None:
    """librosa's numba code compiled once per session, outside anything a test measures."""
    from dgx_music.audio import metadata

    metadata.warm_up()
