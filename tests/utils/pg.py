"""Throwaway PostgreSQL databases for the tests, on the server ``DGX_MUSIC_TEST_PG_URL`` names
or, when it is unset, on a server that answers on 127.0.0.1:5432 (trust auth, user postgres).

Each test session creates uniquely named databases through an admin connection to the server's
``postgres`` database and drops them afterwards (``WITH (FORCE)``, so a worker process the test
killed cannot keep one alive).
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import make_url

#: Environment variable holding the admin URL, e.g.
#: ``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``.
PG_URL_VARIABLE = "DGX_MUSIC_TEST_PG_URL"
#: Prefix of every database the tests create (``DROP`` them by this name if a run was killed).
TEST_DATABASE_PREFIX = "dgx_music_test_"


#: Used when the variable is unset, if something answers on its port.
DEFAULT_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
#: How long the probe waits for a TCP answer, seconds: a local server answers in microseconds.
PROBE_TIMEOUT_S = 0.5


def server_answers(url: str, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Whether a TCP connection to ``url``'s host and port succeeds within ``timeout`` seconds."""
    parsed = make_url(url)
    host, port = parsed.host or "127.0.0.1", parsed.port or 5432
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def admin_url() -> tuple[str | None, str]:
    """(admin URL, why not): the URL to test against, or ``None`` and the reason to skip.

    ``DGX_MUSIC_TEST_PG_URL`` wins when set; otherwise :data:`DEFAULT_ADMIN_URL` is used if a
    server answers there. Either way the server must answer, so a stopped server skips the
    tests with a reason instead of erroring in every one of them.
    """
    url = os.environ.get(PG_URL_VARIABLE) or DEFAULT_ADMIN_URL
    source = PG_URL_VARIABLE if os.environ.get(PG_URL_VARIABLE) else "the default"
    if not server_answers(url):
        host = make_url(url).render_as_string(hide_password=True)
        return None, f"no PostgreSQL server answers at {host} ({source}; set {PG_URL_VARIABLE})"
    return url, ""


def _libpq_url(url: str) -> str:
    # psycopg wants a libpq URL: no "+psycopg" driver suffix, password kept.
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def create_database(admin: str) -> str:
    """Create a uniquely named database on ``admin``'s server; return its SQLAlchemy URL."""
    import psycopg

    name = f"{TEST_DATABASE_PREFIX}{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_libpq_url(admin), autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return make_url(admin).set(database=name).render_as_string(hide_password=False)


def drop_database(admin: str, url: str) -> None:
    """Drop the database ``url`` names, disconnecting whoever still uses it."""
    import psycopg

    name = make_url(url).database
    assert name and name.startswith(TEST_DATABASE_PREFIX), f"refusing to drop {name!r}"
    with psycopg.connect(_libpq_url(admin), autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def temporary_database(admin: str) -> Iterator[str]:
    """A fresh, empty database for the duration of the block."""
    url = create_database(admin)
    try:
        yield url
    finally:
        drop_database(admin, url)
