"""Database engines, sessions and migrations, for SQLite (embedded default) and PostgreSQL.

SQLite connections run in WAL mode with foreign keys enforced and a busy timeout; transactions
are begun explicitly so that a writer can ask for ``BEGIN IMMEDIATE`` and take the write lock
up front (see :meth:`Database.session`). PostgreSQL connections give up connecting after
:data:`PG_CONNECT_TIMEOUT` seconds and are pinged before use when they sat idle in the pool for
more than :data:`PG_PING_AFTER_IDLE` seconds (a ping on every checkout cost a round trip per
request). Reads that need no transaction go through :meth:`Database.read`, which on PostgreSQL
runs in autocommit: one round trip per statement, no ``BEGIN``/``COMMIT``.

Every failure to reach the database is raised as :class:`~dgx_music.errors.DatabaseUnavailableError`
naming the URL (password masked) and the cause.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, create_engine, event, make_url, text
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    DisconnectionError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.orm import Session, sessionmaker

from dgx_music.config import Settings, get_settings
from dgx_music.errors import DatabaseUnavailableError, DgxMusicError, StorageError

if TYPE_CHECKING:
    from alembic.config import Config

logger = logging.getLogger(__name__)

#: How long SQLite waits for another connection's write lock, milliseconds.
SQLITE_BUSY_TIMEOUT_MS = 30_000
#: How long a PostgreSQL connection attempt may take, seconds.
PG_CONNECT_TIMEOUT = 5
#: A pooled PostgreSQL connection idle for longer than this is pinged before use, seconds: one
#: used a moment ago is alive, one that sat through a server restart is replaced.
PG_PING_AFTER_IDLE = 2.0
#: Key of the PostgreSQL advisory lock that serialises concurrent migrations.
MIGRATION_LOCK_KEY = 0x6D75_7369  # "musi"
#: Where the Alembic environment and revisions live, inside the package.
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
#: The newest revision in ``migrations/versions``, so opening an up-to-date database needs no
#: Alembic at all (importing it and loading the scripts cost a CLI command 0.2 s); a test checks
#: it against Alembic's own head.
SCHEMA_HEAD = "0003"
#: Execution option that makes a SQLite transaction begin with ``BEGIN IMMEDIATE``.
SQLITE_BEGIN_OPTION = "dgx_sqlite_begin"


def mask_url(url: str) -> str:
    """``url`` with its password replaced by ``***``."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable database URL>"


def describe_db_error(exc: BaseException) -> str:
    """The first line of a driver error: what a person needs to see, without SQL or traces."""
    original = getattr(exc, "orig", None) or exc
    message = str(original).strip().splitlines()
    return message[0] if message else type(original).__name__


def _sqlite_path(url: str) -> Path | None:
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def create_db_engine(url: str, *, echo: bool = False, autocommit: bool = False) -> Engine:
    """A SQLAlchemy engine for ``url`` with the project's connection settings.

    Parameters
    ----------
    url
        ``sqlite:///path`` or ``postgresql+psycopg://user:password@host:port/name``. The
        directory of a SQLite file is created when missing.
    autocommit
        PostgreSQL only: every connection of the pool runs in autocommit (for reads).

    Raises
    ------
    StorageError
        The URL cannot be parsed or names an unsupported backend.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StorageError(f"cannot parse database URL {mask_url(url)!r}: {exc}") from exc
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        path = _sqlite_path(url)
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise DatabaseUnavailableError(
                    f"cannot create the directory of the database {mask_url(url)}: "
                    f"{exc.strerror or exc}"
                ) from exc
        engine = create_engine(url, echo=echo, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _configure_sqlite_connection)
        event.listen(engine, "begin", _begin_sqlite_transaction)
        return engine
    if backend == "postgresql":
        options: dict[str, Any] = {"isolation_level": "AUTOCOMMIT"} if autocommit else {}
        engine = create_engine(
            url, echo=echo, connect_args={"connect_timeout": PG_CONNECT_TIMEOUT}, **options
        )
        event.listen(engine, "connect", _note_use)
        event.listen(engine, "checkin", _note_use)
        event.listen(engine, "checkout", _ping_if_idle)
        return engine
    raise StorageError(f"unsupported database {mask_url(url)}: use sqlite:/// or postgresql://")


def _configure_sqlite_connection(dbapi_connection: Any, connection_record: Any) -> None:
    # Let SQLAlchemy's "begin" event start transactions (pysqlite's own implicit BEGIN cannot
    # be made IMMEDIATE and does not cover every statement).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        # WAL with synchronous=NORMAL is durable across application crashes; a power loss may
        # lose the last transactions, never consistency.
        cursor.execute("PRAGMA synchronous = NORMAL")
    finally:
        cursor.close()


def _note_use(dbapi_connection: Any, connection_record: Any) -> None:
    if connection_record is not None:
        connection_record.info["dgx_last_used"] = time.monotonic()


def _ping_if_idle(dbapi_connection: Any, connection_record: Any, connection_proxy: Any) -> None:
    # Like pool_pre_ping, but only for connections that sat idle: raising DisconnectionError
    # makes the pool drop this connection and check out (or open) another.
    if getattr(dbapi_connection, "closed", False) or getattr(dbapi_connection, "broken", False):
        raise DisconnectionError("the pooled connection was closed")
    last_used = connection_record.info.get("dgx_last_used", 0.0)
    if time.monotonic() - last_used <= PG_PING_AFTER_IDLE:
        return
    try:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("SELECT 1")
        finally:
            cursor.close()
        if not dbapi_connection.autocommit:
            dbapi_connection.rollback()
    except Exception as exc:
        raise DisconnectionError(f"the pooled connection is dead: {exc}") from exc
    connection_record.info["dgx_last_used"] = time.monotonic()


def _begin_sqlite_transaction(connection: Connection) -> None:
    mode = connection.get_execution_options().get(SQLITE_BEGIN_OPTION, "DEFERRED")
    connection.exec_driver_sql(f"BEGIN {mode}")


class Database:
    """An engine and its session factory.

    Parameters
    ----------
    url
        SQLAlchemy URL (see :func:`create_db_engine`).
    """

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        self.engine = create_db_engine(url, echo=echo)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._write_engine = self.engine
        if self.is_sqlite:
            self._write_engine = self.engine.execution_options(**{SQLITE_BEGIN_OPTION: "IMMEDIATE"})
        self._write_sessions = sessionmaker(self._write_engine, expire_on_commit=False)
        # PostgreSQL reads run in autocommit (READ COMMITTED gives every statement its own
        # snapshot anyway), from a pool of their own whose connections stay in autocommit:
        # switching a shared pool's connection in and out of it on every checkout cost a tenth
        # to a quarter of a status lookup on the 2-core runner (0.41 -> 0.37 ms in interleaved
        # pairs, 0.57 -> 0.42 ms in one asv run). The price: a second pool, so up to twice the
        # server connections per process. SQLite reads keep a transaction, so one read sees
        # one snapshot.
        self._read_engine = self.engine
        if not self.is_sqlite:
            self._read_engine = create_db_engine(url, echo=echo, autocommit=True)
        self.backend = self.engine.dialect.name

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @property
    def masked_url(self) -> str:
        return mask_url(self.url)

    @contextmanager
    def session(self, *, write: bool = False) -> Iterator[Session]:
        """A session that commits when the block ends and rolls back when it raises.

        Parameters
        ----------
        write
            On SQLite, begin with ``BEGIN IMMEDIATE`` so the transaction holds the write lock
            from its first statement: read-then-write sequences (claiming a job) cannot be
            interleaved with another writer. No effect on PostgreSQL, which locks rows.

        Raises
        ------
        DatabaseUnavailableError
            The database cannot be reached or is locked for longer than the busy timeout.
        StorageError
            Any other database failure.
        """
        factory = self._write_sessions if write else self.sessions
        try:
            with factory() as session, session.begin():
                yield session
        except DgxMusicError:
            raise
        except SQLAlchemyError as exc:
            raise self.storage_error(exc) from exc

    @contextmanager
    def transaction(self, *, write: bool = False) -> Iterator[Connection]:
        """A Core connection in a transaction that commits when the block ends: for hot paths
        that need no ORM unit of work. ``write`` and the errors are as for :meth:`session`."""
        engine = self._write_engine if write else self.engine
        try:
            with engine.begin() as connection:
                yield connection
        except DgxMusicError:
            raise
        except SQLAlchemyError as exc:
            raise self.storage_error(exc) from exc

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A connection for reads that need no transaction of their own, with the errors of
        :meth:`session`. Nothing written through it is committed on SQLite.

        Raises
        ------
        DatabaseUnavailableError
            The database cannot be reached.
        StorageError
            Any other database failure.
        """
        try:
            with self._read_engine.connect() as connection:
                yield connection
        except DgxMusicError:
            raise
        except SQLAlchemyError as exc:
            raise self.storage_error(exc) from exc

    def storage_error(self, exc: SQLAlchemyError) -> DgxMusicError:
        """The project error for a SQLAlchemy failure: unavailable, or a plain storage error."""
        if isinstance(exc, OperationalError | InterfaceError):
            return self.unavailable(exc)
        if isinstance(exc, DBAPIError) and exc.connection_invalidated:
            return self.unavailable(exc)
        return StorageError(f"database error: {describe_db_error(exc)}")

    def unavailable(self, exc: BaseException) -> DatabaseUnavailableError:
        """The error to raise for a failure to reach this database."""
        return DatabaseUnavailableError(
            f"database {self.masked_url} is unavailable: {describe_db_error(exc)}"
        )

    def check_connection(self) -> None:
        """Connect and run ``SELECT 1``.

        Raises
        ------
        DatabaseUnavailableError
            With the masked URL and the driver's reason.
        """
        try:
            with self.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except (DBAPIError, SQLAlchemyError) as exc:
            raise self.unavailable(exc) from exc

    def stored_revision(self) -> str | None:
        """The schema revision recorded in ``alembic_version``, read with plain SQL (no
        Alembic); ``None`` for a database that was never migrated. Connecting checks the
        connection.

        Raises
        ------
        DatabaseUnavailableError
            With the masked URL and the driver's reason.
        """
        exists = (
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version'"
            if self.is_sqlite
            else "SELECT count(*) FROM pg_catalog.pg_tables "
            "WHERE tablename = 'alembic_version' AND schemaname = current_schema()"
        )
        try:
            with self.engine.connect() as connection:
                if not connection.execute(text(exists)).scalar_one():
                    return None
                versions = connection.execute(text("SELECT version_num FROM alembic_version"))
                rows = versions.scalars().all()
        except (DBAPIError, SQLAlchemyError) as exc:
            raise self.unavailable(exc) from exc
        return rows[0] if len(rows) == 1 else None

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()
        if self._read_engine is not self.engine:
            self._read_engine.dispose()


def alembic_config(database: Database) -> Config:
    """An Alembic configuration for ``database``, built in code (no ``alembic.ini``)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # ``%`` would be read as interpolation by configparser.
    config.set_main_option("sqlalchemy.url", database.url.replace("%", "%%"))
    return config


def head_revision() -> str:
    """The newest migration shipped with this package."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()
    if head is None:
        raise StorageError(f"no migrations found in {MIGRATIONS_DIR}")
    return head


def current_revision(database: Database) -> str | None:
    """The revision the database is at; ``None`` for an empty database."""
    from alembic.runtime.migration import MigrationContext

    try:
        with database.engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    except (DBAPIError, SQLAlchemyError) as exc:
        raise database.unavailable(exc) from exc


def is_up_to_date(database: Database) -> bool:
    """Whether the database schema is at the newest shipped migration."""
    return current_revision(database) == head_revision()


def upgrade(database: Database, revision: str = "head") -> None:
    """Migrate ``database`` to ``revision``; a no-op when it is already there.

    Safe to run from many processes at once: PostgreSQL takes an advisory lock and SQLite an
    immediate (write-locked) transaction around the migration, so one process migrates and the
    others find the schema current.

    Raises
    ------
    DatabaseUnavailableError
        The database cannot be reached.
    StorageError
        A migration failed; the transaction is rolled back.
    """
    from alembic import command

    config = alembic_config(database)
    engine: Engine = database.engine
    if database.is_sqlite:
        engine = engine.execution_options(**{SQLITE_BEGIN_OPTION: "IMMEDIATE"})
    try:
        with engine.connect() as connection, connection.begin():
            if not database.is_sqlite:
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
                )
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    except (OperationalError, InterfaceError) as exc:
        raise database.unavailable(exc) from exc
    except SQLAlchemyError as exc:
        raise StorageError(
            f"migrating {database.masked_url} failed: {describe_db_error(exc)}"
        ) from exc
    logger.info(
        "database %s is at revision %s",
        database.masked_url,
        revision,
        extra={"action": "db_upgrade"},
    )


_databases: dict[str, Database] = {}
_databases_lock = threading.Lock()


def opened_database(settings: Settings) -> Database | None:
    """The database :func:`get_database` already opened for ``settings``; ``None`` when it has
    not (yet), without connecting or waiting for a lock."""
    return _databases.get(settings.resolved_database_url)


def get_database(settings: Settings | None = None) -> Database:
    """The process-wide :class:`Database` for ``settings`` (the process settings by default).

    The first call for a URL checks the connection and, when ``auto_migrate`` is on, upgrades
    the schema to the newest migration.

    Raises
    ------
    DatabaseUnavailableError
        The database cannot be reached.
    """
    settings = settings or get_settings()
    url = settings.resolved_database_url
    database = _databases.get(url)  # every request asks: answer without the lock when known
    if database is not None:
        return database
    with _databases_lock:
        database = _databases.get(url)
        if database is not None:
            return database
        database = Database(url)
        try:
            revision = database.stored_revision()
            if settings.auto_migrate and revision != SCHEMA_HEAD:
                upgrade(database)
        except BaseException:
            database.dispose()
            raise
        _databases[url] = database
        return database


def close_databases(*, close_connections: bool = True) -> None:
    """Forget every database :func:`get_database` opened, closing their connections.

    In a process forked from one that had databases open, pass ``close_connections=False``:
    the pooled connections belong to the parent, and closing them here would close its sockets.
    """
    with _databases_lock:
        for database in _databases.values():
            database.engine.dispose(close=close_connections)
        _databases.clear()
