"""Storage failures a person meets in life, end to end: a URL that cannot be parsed or names an
unsupported database, a SQLite directory that cannot be made, a server that is not there, and a
statement that fails inside each kind of transaction. Each must raise the project's error with a
message that names the database (password masked) and the cause, never a raw SQLAlchemy error.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from dgx_music.errors import DatabaseUnavailableError, StorageError
from dgx_music.storage import database as storage
from dgx_music.storage.database import Database, create_db_engine, mask_url

#: Nothing listens on port 9 of the loopback.
UNREACHABLE = "postgresql+psycopg://dgx:s3cret-pw@127.0.0.1:9/nowhere"


def test_mask_url_hides_the_password_and_survives_garbage():
    assert mask_url(UNREACHABLE) == "postgresql+psycopg://dgx:***@127.0.0.1:9/nowhere"
    assert mask_url("not a url at all") == "<unparseable database URL>"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("not a url at all", "cannot parse database URL '<unparseable database URL>'"),
        ("mysql://root:pw@127.0.0.1/db", "unsupported database mysql://root:***@127.0.0.1/db"),
    ],
)
def test_a_bad_url_is_refused_with_the_reason(url: str, message: str):
    with pytest.raises(StorageError) as caught:
        create_db_engine(url)
    assert message in str(caught.value)
    assert "pw@" not in str(caught.value)


def test_a_sqlite_directory_that_cannot_be_made_is_unavailable(tmp_path: Path):
    blocker = tmp_path / "file-in-the-way"
    blocker.write_text("x")
    with pytest.raises(DatabaseUnavailableError, match="cannot create the directory"):
        create_db_engine(f"sqlite:///{blocker / 'db' / 'dgx.db'}")


def test_an_in_memory_sqlite_database_needs_no_directory():
    engine = create_db_engine("sqlite://")
    with engine.connect() as connection:
        assert connection.execute(text("SELECT 1")).scalar_one() == 1
    engine.dispose()


def test_an_unreachable_server_is_unavailable_at_every_entry_point():
    database = Database(UNREACHABLE)
    try:
        for attempt in (
            lambda: storage.current_revision(database),
            lambda: storage.upgrade(database),
        ):
            with pytest.raises(DatabaseUnavailableError) as caught:
                attempt()
            assert "127.0.0.1:9" in str(caught.value) and "s3cret-pw" not in str(caught.value)
        for block in (database.session, database.transaction, database.read):
            with pytest.raises(DatabaseUnavailableError), block() as handle:
                handle.execute(text("SELECT 1"))
    finally:
        database.dispose()


#: Breaks the prompts table's CHECK (use_count >= 0): an integrity error on every backend.
BAD_INSERT = text(
    "INSERT INTO prompts (text, text_sha256, use_count, first_used_at, last_used_at) "
    "VALUES ('p', 'digest', -1, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
)


def test_a_failing_statement_is_a_storage_error_in_every_kind_of_transaction(database):
    for block in (database.session, database.transaction, database.read):
        with pytest.raises(StorageError) as caught, block() as handle:
            handle.execute(BAD_INSERT)
        # A broken constraint is the caller's data, not an unreachable database.
        assert not isinstance(caught.value, DatabaseUnavailableError), caught.value
        assert str(caught.value).startswith("database error")
        assert "use_count" in str(caught.value)


def test_get_database_returns_one_database_per_url(database, monkeypatch: pytest.MonkeyPatch):
    first = storage.get_database()
    assert storage.get_database() is first is database
