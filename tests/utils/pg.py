"""Throwaway PostgreSQL databases for the tests, on the server ``DGX_MUSIC_TEST_PG_URL`` names.

Each test session creates uniquely named databases through an admin connection to the server's
``postgres`` database and drops them afterwards (``WITH (FORCE)``, so a worker process the test
killed cannot keep one alive).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import make_url

#: Environment variable holding the admin URL, e.g.
#: ``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``.
PG_URL_VARIABLE = "DGX_MUSIC_TEST_PG_URL"
#: Prefix of every database the tests create (``DROP`` them by this name if a run was killed).
TEST_DATABASE_PREFIX = "dgx_music_test_"


def admin_url() -> str | None:
    """The admin URL from the environment, or ``None`` when PostgreSQL tests must skip."""
    return os.environ.get(PG_URL_VARIABLE) or None


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
