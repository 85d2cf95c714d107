"""The databases the suite measures, shared by the benchmarks and ``benchgate``.

- PostgreSQL: ``DGX_MUSIC_BENCH_PG_URL`` (or ``DGX_MUSIC_TEST_PG_URL``) wins, ``off`` means
  none; else a server answering on 127.0.0.1:5432 (trust auth, user postgres); else PostgreSQL
  cases are skipped (n/a), never failed.
- Every database the suite makes is named ``dgx_music_bench_<token>_*``. The token names one run:
  ``benchgate`` sets ``DGX_MUSIC_BENCH_TOKEN`` for every process of a run and drops the run's
  databases (and its scratch directory) when it ends; a bare ``asv run`` gets a token per
  process (``python -m benchgate cleanup`` drops what such runs leave).
- :func:`shared_database` builds a read-only input (a seeded history) once per run and schema:
  every round and both commits of a gate run read the same one, where each round of each
  commit used to seed its own (36 s a time for the 100,000-row histories on the 2-core
  runner).

Importing this module is cheap and needs only the standard library: ``benchgate`` imports it
outside any asv environment. psycopg and SQLAlchemy are imported where they are used.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import tempfile
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

#: The server tried when no URL is given.
LOCAL_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
#: Prefix of every PostgreSQL database the suite creates.
PG_DATABASE_PREFIX = "dgx_music_bench_"
#: Environment variable naming the run (set by ``benchgate`` for every process of a run).
TOKEN_VARIABLE = "DGX_MUSIC_BENCH_TOKEN"
#: Environment variables naming the PostgreSQL server, the first set wins.
URL_VARIABLES = ("DGX_MUSIC_BENCH_PG_URL", "DGX_MUSIC_TEST_PG_URL")


@lru_cache(maxsize=1)
def pg_url() -> str | None:
    """The PostgreSQL server to benchmark: an explicit URL wins (``off`` means none), else a local
    server if one answers on 127.0.0.1:5432, else ``None`` (PostgreSQL cases are skipped)."""
    explicit = next((os.environ[name] for name in URL_VARIABLES if os.environ.get(name)), None)
    if explicit:
        return None if explicit == "off" else explicit
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return None
    with socket.socket() as probe:
        probe.settimeout(1.0)
        if probe.connect_ex(("127.0.0.1", 5432)) != 0:
            return None
    return LOCAL_PG_URL


def describe() -> str:
    """Which PostgreSQL a run will use, password hidden."""
    url = pg_url()
    if not url:
        return (
            "PostgreSQL: none (DGX_MUSIC_BENCH_PG_URL unset or off, nothing on 127.0.0.1:5432):"
            " its cases are n/a"
        )
    from sqlalchemy.engine import make_url

    return f"PostgreSQL: {make_url(url).render_as_string(hide_password=True)}"


def run_token() -> str:
    """This run's token: ``DGX_MUSIC_BENCH_TOKEN``, else one per process (a bare ``asv run``)."""
    token = os.environ.get(TOKEN_VARIABLE) or f"p{os.getpid()}"
    if not token.isalnum():
        raise ValueError(f"{TOKEN_VARIABLE}: {token!r} must be letters and digits only")
    return token.lower()


def run_scratch(token: str | None = None) -> Path:
    """The run's directory for files its processes share (SQLite histories)."""
    path = Path(tempfile.gettempdir()) / f"dgx-music-bench-run-{token or run_token()}"
    path.mkdir(exist_ok=True)
    return path


def remove_run_scratch(token: str) -> None:
    shutil.rmtree(Path(tempfile.gettempdir()) / f"dgx-music-bench-run-{token}", ignore_errors=True)


def _admin_connection(url: str):
    import psycopg
    from sqlalchemy.engine import make_url

    admin = make_url(url).set(drivername="postgresql", database="postgres")
    return psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True)


def _require_pg() -> str:
    url = pg_url()
    if not url:
        raise NotImplementedError(
            "no PostgreSQL: none answers on 127.0.0.1:5432 and DGX_MUSIC_BENCH_PG_URL is unset"
        )
    return url


def _pg_database_url(name: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(_require_pg()).set(database=name).render_as_string(hide_password=False)


def fresh_database_url(backend: str, name: str) -> str:
    """An empty database for ``backend``: a new SQLite file, or a new PostgreSQL database called
    ``dgx_music_bench_<token>_<name>``, re-created if an earlier run left one of that name.

    Raises NotImplementedError (asv: skipped) for PostgreSQL when there is no server.
    """
    if backend == "sqlite":
        return f"sqlite:///{Path(tempfile.mkdtemp(prefix='dgx-music-bench-')) / (name + '.db')}"
    name = f"{PG_DATABASE_PREFIX}{run_token()}_{name}"
    with _admin_connection(_require_pg()) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')
    return _pg_database_url(name)


def shared_database(backend: str, name: str, key: str, build: Callable[[str], None]) -> str:
    """A database every process of this run gets for the same ``name`` and ``key``; the first
    to ask builds it with ``build(url)`` (which must leave it complete and read-only from then
    on), the others find it. ``key`` says what the content depends on besides ``name`` (the
    schema): a gate's two commits share the database only when their keys agree.

    The database is built under a temporary name and renamed when complete, so a process that
    died half-way leaves nothing another would take for finished.
    """
    final = f"{name}_{key}"
    if backend == "sqlite":
        path = run_scratch() / f"{final}.db"
        if not path.exists():
            building = path.with_suffix(f".part{os.getpid()}")
            building.unlink(missing_ok=True)
            build(f"sqlite:///{building}")
            os.replace(building, path)
        return f"sqlite:///{path}"
    database = f"{PG_DATABASE_PREFIX}{run_token()}_{final}"
    with _admin_connection(_require_pg()) as connection:
        exists = connection.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (database,)
        ).fetchone()
        if exists:
            return _pg_database_url(database)
        building = f"{database[:50]}_part{os.getpid()}"
        connection.execute(f'DROP DATABASE IF EXISTS "{building}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{building}"')
    build(_pg_database_url(building))
    with _admin_connection(_require_pg()) as connection:
        connection.execute(f'ALTER DATABASE "{building}" RENAME TO "{database}"')
    return _pg_database_url(database)


def schema_key() -> str:
    """What a seeded table's content depends on in the installed ``dgx_music``: its migrations
    and ORM models (12 hex digits of their SHA-256)."""
    from dgx_music import storage

    root = Path(storage.__file__).parent
    digest = hashlib.sha256()
    for path in sorted([root / "models.py", *root.glob("migrations/versions/*.py")]):
        if path.exists():
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def drop_database(url: str) -> None:
    """Drop a PostgreSQL database this suite made (a no-op for SQLite files)."""
    from sqlalchemy.engine import make_url

    target = make_url(url)
    if not target.drivername.startswith("postgresql"):
        return
    if not (target.database or "").startswith(PG_DATABASE_PREFIX):
        raise ValueError(f"refusing to drop {target.database!r}: not a benchmark database")
    with _admin_connection(url) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{target.database}" WITH (FORCE)')


def drop_bench_databases(token: str | None) -> list[str]:
    """Drop ``dgx_music_bench_<token>_*`` (every ``dgx_music_bench_*`` when token is None)."""
    url = pg_url()
    if not url:
        return []
    prefix = PG_DATABASE_PREFIX + (f"{token}_" if token else "")
    with _admin_connection(url) as connection:
        names = [
            row[0]
            for row in connection.execute("SELECT datname FROM pg_database")
            if row[0].startswith(prefix)
        ]
        for name in names:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return names
