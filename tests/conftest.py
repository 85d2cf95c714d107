"""Fixtures shared by every test: isolated settings and directories, fixed torch threads,
databases (SQLite and PostgreSQL), engines, audio, and the markers that select them.

Markers (registered in pyproject.toml, documented in docs/TESTING_GUIDE.md):

- ``postgres``: added here to every test that runs on PostgreSQL (the ``postgresql`` case of
  ``database_url``, or any test using ``pg_admin_url``); ``-m "not postgres"`` leaves them out.
- ``browser``: the Chromium tests in tests/browser.
- ``gpu``: needs CUDA, skipped without it. ``slow``: left out by ``-m "not slow"``.

With ``DGX_MUSIC_REQUIRE_SERVICES=1`` (CI sets it) a PostgreSQL or browser test that would
skip for lack of its service fails instead, so a green run means they all ran.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

# Never reach for the Hugging Face hub, whatever the caller's environment says.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import torch  # after the offline switches

from dgx_music.config import get_settings

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from dgx_music.generation.engine import MusicEngine
    from tests.utils.mock_helpers import MockMusicGenerationEngine

# One thread is the fastest and the steadiest for the tiny model on a small CPU.
torch.set_num_threads(1)

#: Set to 1 to turn "skipped: service missing" into a failure (PostgreSQL, Chromium).
REQUIRE_SERVICES_VARIABLE = "DGX_MUSIC_REQUIRE_SERVICES"
BROWSER_DIR = Path(__file__).parent / "browser"


#: Read once at start-up: the per-test settings isolation clears every other DGX_MUSIC_* variable.
SERVICES_REQUIRED = os.environ.get(REQUIRE_SERVICES_VARIABLE, "") not in {"", "0", "false", "no"}


def services_required() -> bool:
    return SERVICES_REQUIRED


def skip_or_fail(reason: str) -> None:
    """Skip with ``reason``, or fail when :data:`REQUIRE_SERVICES_VARIABLE` is set."""
    if services_required():
        pytest.fail(f"{reason} ({REQUIRE_SERVICES_VARIABLE} is set: a missing service fails)")
    pytest.skip(reason)


def _runs_on_postgres(item: pytest.Item) -> bool:
    callspec = getattr(item, "callspec", None)
    if callspec is not None and callspec.params.get("database_url") == "postgresql":
        return True
    return "pg_admin_url" in getattr(item, "fixturenames", ())


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark PostgreSQL and browser tests before ``-m`` selects (hence ``tryfirst``)."""
    for item in items:
        if _runs_on_postgres(item):
            item.add_marker(pytest.mark.postgres)
        if BROWSER_DIR in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.browser)


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    """Keep the cyclic collector off what collection built, and run it less often.

    Collection imports torch, transformers, librosa, SQLAlchemy and FastAPI: about 400,000
    objects that live as long as the worker. Frozen (as the console script does,
    dgx_music.__main__), later full collections skip them; and the tests make objects by the
    million, so the youngest generation is collected every 20,000 allocations instead of 700.
    On the API, end-to-end and metadata tests: 1.9 s of the collector per worker instead of
    3.9 s, out of 44 s."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)


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
# (one migrated database per session, emptied before each test). PostgreSQL tests use
# DGX_MUSIC_TEST_PG_URL, or a server answering on 127.0.0.1:5432; they skip (or, with
# DGX_MUSIC_REQUIRE_SERVICES=1, fail) only when no server answers.

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

    url, reason = pg.admin_url()
    if url is None:
        skip_or_fail(reason)
    assert url is not None
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


# --- The spec's fixtures ------------------------------------------------------------------------


@pytest.fixture
def test_db_url(database_url: str) -> str:
    """The URL of an empty, migrated database: SQLite and PostgreSQL (spec name)."""
    return database_url


@pytest.fixture
def db_session(database: Any) -> Iterator[Session]:
    """An open ORM session on the test database; what it did not commit is rolled back."""
    session = database.sessions()
    try:
        yield session
    finally:
        session.rollback()
        session.close()


@pytest.fixture
def clean_db_session(database: Any, db_session: Session) -> Iterator[Session]:
    """:func:`db_session` on tables proven empty before the test and emptied after it."""
    from sqlalchemy import func, select

    from dgx_music.storage.models import Generation, Prompt
    from tests.utils.db_helpers import truncate_all

    for table in (Generation, Prompt):
        count = db_session.scalar(select(func.count()).select_from(table))
        assert count == 0, f"{table.__tablename__} holds {count} rows before the test"
    db_session.rollback()  # end the read transaction: SQLite would hold it against the truncate
    yield db_session
    db_session.rollback()
    truncate_all(database)


@pytest.fixture
def seeded_db_session(clean_db_session: Session) -> Session:
    """:func:`clean_db_session` holding ten committed generations in the default status mix."""
    from tests.utils.db_helpers import seed_test_generations

    seed_test_generations(clean_db_session, 10)
    clean_db_session.commit()
    return clean_db_session


@pytest.fixture
def mock_engine() -> MockMusicGenerationEngine:
    """The fault-injecting engine with the spec's 0.1 s generation delay."""
    from tests.utils.mock_helpers import MockMusicGenerationEngine

    return MockMusicGenerationEngine()


#: Checkpoint the GPU tests use (override with DGX_MUSIC_GPU_TEST_MODEL).
GPU_MODEL = os.environ.get("DGX_MUSIC_GPU_TEST_MODEL", "facebook/musicgen-small")


@pytest.fixture(scope="module")
def real_engine() -> MusicEngine:
    """A MusicEngine on CUDA with real MusicGen weights loaded once per module; skips on a
    machine without a GPU or without the weights (never downloads them)."""
    from dgx_music.config import Settings
    from dgx_music.generation.engine import MusicEngine

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device on this machine (gpu tests run on the DGX)")
    engine = MusicEngine(Settings(device="cuda"))
    available = {model.name: model.available_offline for model in engine.available_models()}
    if not available.get(GPU_MODEL, False):
        pytest.skip(f"{GPU_MODEL} weights are not on this machine (see README, offline weights)")
    engine.backend(GPU_MODEL)
    return engine


@pytest.fixture
def mock_settings(output_dir: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Process settings pointing at this test's directories, on the CPU, polling fast."""
    monkeypatch.setenv("DGX_MUSIC_OUTPUT_DIR", str(output_dir))
    monkeypatch.setenv("DGX_MUSIC_DATA_DIR", str(data_dir))
    monkeypatch.setenv("DGX_MUSIC_DEVICE", "cpu")
    monkeypatch.setenv("DGX_MUSIC_POLL_SECONDS", "0.05")
    monkeypatch.setenv("DGX_MUSIC_TORCH_THREADS", "1")
    get_settings.cache_clear()
    return get_settings()


@pytest.fixture
def test_audio_tensor() -> torch.Tensor:
    """One second of a 440 Hz sine, stereo 32 kHz float32, (channels, samples)."""
    from tests.utils.audio_helpers import create_test_audio_tensor

    return create_test_audio_tensor()


@pytest.fixture
def test_audio_file(output_dir: Path, test_audio_tensor: torch.Tensor) -> Path:
    """``test_audio_tensor`` through the real exporter: a compliant WAV in ``output_dir``."""
    from dgx_music.audio.export import export_wav

    path = output_dir / "test_audio.wav"
    export_wav(test_audio_tensor.numpy(), 32_000, path)
    return path
