"""Storage: migrations equal the ORM, constraints hold on both backends, connections are
configured, failures to connect are reported, and output-file auditing finds every defect."""

from __future__ import annotations

import os
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from dgx_music.config import get_settings
from dgx_music.errors import DatabaseUnavailableError, StorageError
from dgx_music.storage import files
from dgx_music.storage.database import (
    Database,
    close_databases,
    current_revision,
    get_database,
    head_revision,
    is_up_to_date,
    mask_url,
    upgrade,
)
from dgx_music.storage.files import FileRecord, audit_outputs, relative_output_path
from dgx_music.storage.models import Base, Generation, GenerationStatus, Prompt, prompt_digest
from tests.utils.db_helpers import seed_test_generations

#: A port nothing listens on: connecting is refused at once.
CLOSED_PORT_URL = "postgresql+psycopg://dgx:s3cret-pw@127.0.0.1:9/nowhere"
ID = "0b7c2a56-4a8e-4c1e-9f43-1a2b3c4d5e6f"
CREATED = datetime(2026, 3, 7, 9, 30, tzinfo=UTC)


# --- schema ------------------------------------------------------------------------------------


def reflected_schema(database: Database) -> dict[str, dict[str, set]]:
    inspector = inspect(database.engine)
    schema = {}
    for table in ("prompts", "generations"):
        schema[table] = {
            "checks": {c["name"] for c in inspector.get_check_constraints(table)},
            "uniques": {
                (c["name"], tuple(c["column_names"]))
                for c in inspector.get_unique_constraints(table)
            },
            "indexes": {
                (i["name"], tuple(i["column_names"]))
                for i in inspector.get_indexes(table)
                if not i.get("duplicates_constraint")
            },
            "foreign_keys": {
                (f["name"], tuple(f["constrained_columns"]), f["referred_table"])
                for f in inspector.get_foreign_keys(table)
            },
        }
    return schema


def orm_schema() -> dict[str, dict[str, set]]:
    from sqlalchemy import CheckConstraint, ForeignKeyConstraint, UniqueConstraint

    schema = {}
    for name in ("prompts", "generations"):
        table = Base.metadata.tables[name]
        schema[name] = {
            "checks": {c.name for c in table.constraints if isinstance(c, CheckConstraint)},
            "uniques": {
                (c.name, tuple(col.name for col in c.columns))
                for c in table.constraints
                if isinstance(c, UniqueConstraint)
            },
            "indexes": {(i.name, tuple(col.name for col in i.columns)) for i in table.indexes},
            "foreign_keys": {
                (c.name, tuple(col.name for col in c.columns), c.referred_table.name)
                for c in table.constraints
                if isinstance(c, ForeignKeyConstraint)
            },
        }
    return schema


def test_migrations_produce_exactly_the_orm_schema(database: Database):
    with database.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, Base.metadata)
    assert differences == []
    # Autogenerate does not compare CHECK constraints; reflection does, by their fixed names.
    assert reflected_schema(database) == orm_schema()
    assert orm_schema()["generations"]["checks"] == {
        "ck_generations_duration_positive",
        "ck_generations_status_valid",
        "ck_generations_attempts_not_negative",
        "ck_generations_progress_fraction",
    }


def test_upgrade_is_idempotent_and_reports_head(database: Database):
    assert current_revision(database) == head_revision()
    upgrade(database)
    upgrade(database)
    assert is_up_to_date(database)


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_database_url(request: pytest.FixtureRequest, tmp_path: Path):
    """An empty database that has never been migrated."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    from tests.utils import pg

    with pg.temporary_database(request.getfixturevalue("pg_admin_url")) as url:
        yield url


def test_concurrent_upgrades_of_a_fresh_database_agree(fresh_database_url: str):
    databases = [Database(fresh_database_url) for _ in range(3)]
    assert current_revision(databases[0]) is None
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(databases))

    def migrate(database: Database) -> None:
        try:
            barrier.wait(timeout=10)
            upgrade(database)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=migrate, args=(db,)) for db in databases]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    try:
        assert errors == []
        assert all(is_up_to_date(db) for db in databases)
    finally:
        for db in databases:
            db.dispose()


def test_sqlite_connections_use_wal_foreign_keys_and_a_busy_timeout(tmp_path: Path):
    database = Database(f"sqlite:///{tmp_path / 'nested' / 'dir' / 'x.db'}")
    try:
        with database.engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000
    finally:
        database.dispose()


def test_auto_migrate_can_be_turned_off(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("DGX_MUSIC_AUTO_MIGRATE", "false")
    get_settings.cache_clear()
    database = get_database()
    assert current_revision(database) is None
    close_databases()
    monkeypatch.setenv("DGX_MUSIC_AUTO_MIGRATE", "true")
    get_settings.cache_clear()
    assert current_revision(get_database()) == head_revision()


def test_default_database_lives_in_the_data_dir(tmp_path: Path):
    database = get_database()
    assert database.is_sqlite
    assert (tmp_path / "data" / "dgx_music.db").is_file()


# --- constraints ------------------------------------------------------------------------------


def insert_generation(database: Database, **changes) -> None:
    with database.session() as session:
        prompt = Prompt(
            text="p",
            text_sha256=prompt_digest("p"),
            use_count=1,
            first_used_at=CREATED,
            last_used_at=CREATED,
        )
        session.add(prompt)
        session.flush()
        fields = {
            "id": ID,
            "prompt_id": prompt.id,
            "model": "synth",
            "duration": 1.0,
            "temperature": 1.0,
            "top_k": 250,
            "top_p": 0.0,
            "guidance_scale": 3.0,
            "status": GenerationStatus.PENDING,
            "attempts": 0,
            "progress": 0.0,
            "created_at": CREATED,
        }
        fields.update(changes)
        session.add(Generation(**fields))


@pytest.mark.parametrize(
    ("changes", "constraint"),
    [
        ({"duration": 0.0}, "duration_positive"),
        ({"duration": -1.0}, "duration_positive"),
        ({"attempts": -1}, "attempts_not_negative"),
        ({"progress": 1.5}, "progress_fraction"),
    ],
)
def test_check_constraints_reject_bad_rows(database: Database, changes: dict, constraint: str):
    with pytest.raises(StorageError, match=constraint):
        insert_generation(database, **changes)
    with database.session() as session:
        assert session.query(Generation).count() == 0


def test_status_check_rejects_an_unknown_status_written_behind_the_orm(database: Database):
    insert_generation(database)
    with pytest.raises(StorageError, match="status_valid"), database.session() as session:
        session.execute(text("UPDATE generations SET status = 'lost'"))


def test_foreign_key_to_prompts_is_enforced(database: Database):
    with pytest.raises(StorageError, match=r"(?i)foreign key"), database.session() as session:
        session.execute(
            text(
                "INSERT INTO generations (id, prompt_id, model, duration, temperature, top_k,"
                " top_p, guidance_scale, status, attempts, progress, created_at)"
                " VALUES (:id, 999, 'synth', 1, 1, 250, 0, 3, 'pending', 0, 0, :created)"
            ),
            {"id": ID.replace("-", "") if database.is_sqlite else ID, "created": CREATED},
        )


def test_file_paths_are_unique(database: Database):
    insert_generation(database, file_path="2026/03/a.wav")
    with pytest.raises(StorageError, match=r"(?i)unique"), database.session() as session:
        prompt_id = session.execute(text("SELECT id FROM prompts")).scalar_one()
        session.add(
            Generation(
                id="1b7c2a56-4a8e-4c1e-9f43-1a2b3c4d5e6f",
                prompt_id=prompt_id,
                model="synth",
                duration=1.0,
                temperature=1.0,
                top_k=250,
                top_p=0.0,
                guidance_scale=3.0,
                status=GenerationStatus.COMPLETED,
                attempts=1,
                progress=1.0,
                created_at=CREATED,
                file_path="2026/03/a.wav",
            )
        )


def test_timestamps_come_back_as_utc(database: Database):
    eastern = CREATED.astimezone(__import__("zoneinfo").ZoneInfo("America/New_York"))
    insert_generation(database, created_at=eastern)
    with database.session() as session:
        stored = session.get_one(Generation, ID).created_at
    assert stored.tzinfo is not None
    assert stored.utcoffset() == timedelta(0)
    assert stored == CREATED


def test_seeding_helper_fills_the_status_mix(database: Database):
    with database.session() as session:
        ids = seed_test_generations(session, 500, {GenerationStatus.COMPLETED: 3, "pending": 1})
    assert len(set(ids)) == 500
    with database.session() as session:
        counts = dict(
            session.execute(text("SELECT status, count(*) FROM generations GROUP BY status")).all()
        )
    assert set(counts) == {"completed", "pending"}
    assert sum(counts.values()) == 500
    assert 300 < counts["completed"] < 450


# --- connectivity -----------------------------------------------------------------------------


def test_unreachable_database_names_the_url_without_its_password():
    database = Database(CLOSED_PORT_URL)
    started = time.monotonic()
    with pytest.raises(DatabaseUnavailableError) as caught:
        database.check_connection()
    assert time.monotonic() - started < 10
    message = str(caught.value)
    assert "s3cret-pw" not in message
    assert "postgresql+psycopg://dgx:***@127.0.0.1:9/nowhere" in message
    assert "unavailable" in message
    database.dispose()


def test_get_database_fails_clearly_when_unreachable(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("DGX_MUSIC_DATABASE_URL", CLOSED_PORT_URL)
    get_settings.cache_clear()
    with pytest.raises(DatabaseUnavailableError, match=r"\*\*\*"):
        get_database()


def test_mask_url_hides_passwords_only():
    assert mask_url("postgresql+psycopg://u:p@h/d") == "postgresql+psycopg://u:***@h/d"
    assert mask_url("sqlite:///data/x.db") == "sqlite:///data/x.db"


def test_a_session_that_raises_rolls_back(database: Database):
    with pytest.raises(RuntimeError), database.session() as session:
        session.add(
            Prompt(
                text="x",
                text_sha256=prompt_digest("x"),
                use_count=1,
                first_used_at=CREATED,
                last_used_at=CREATED,
            )
        )
        session.flush()
        raise RuntimeError("boom")
    with database.session() as session:
        assert session.query(Prompt).count() == 0


# --- output files -----------------------------------------------------------------------------


def test_relative_output_path_is_year_month_id():
    assert relative_output_path(ID, CREATED) == Path("2026") / "03" / f"{ID}.wav"


def record(status: GenerationStatus, **changes) -> FileRecord:
    fields = {
        "id": ID,
        "status": status,
        "file_path": None,
        "file_size": None,
        "sha256": None,
        "worker_id": None,
        "lease_expires_at": None,
    }
    fields.update(changes)
    return FileRecord(**fields)


def write_output(output_dir: Path, generation_id: str, data: bytes = b"RIFF....") -> str:
    relative = relative_output_path(generation_id, CREATED)
    path = output_dir / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return relative.as_posix()


def test_audit_of_a_consistent_directory_is_clean(output_dir: Path):
    relative = write_output(output_dir, ID, b"abc")
    good = record(
        GenerationStatus.COMPLETED,
        file_path=relative,
        file_size=3,
        sha256=files.file_sha256(output_dir / relative),
    )
    (output_dir / "notes.txt").write_text("not ours")
    report = audit_outputs(output_dir, [good], now=CREATED)
    assert report.ok, report.problems()
    assert (report.rows_checked, report.files_checked) == (1, 1)


def test_audit_finds_every_kind_of_defect(output_dir: Path):
    orphan_id = "11111111-1111-4111-8111-111111111111"
    missing_id = "22222222-2222-4222-8222-222222222222"
    resized_id = "33333333-3333-4333-8333-333333333333"
    altered_id = "44444444-4444-4444-8444-444444444444"
    stuck_id = "55555555-5555-4555-8555-555555555555"
    failed_id = "66666666-6666-4666-8666-666666666666"
    orphan = write_output(output_dir, orphan_id)
    failed_leftover = write_output(output_dir, failed_id)
    resized = write_output(output_dir, resized_id, b"12345")
    altered = write_output(output_dir, altered_id, b"abc")
    temp = output_dir / "2026" / "03" / f".{failed_id}.wav.x1y2.tmp"
    temp.write_bytes(b"partial")
    records = [
        record(GenerationStatus.COMPLETED, id=missing_id, file_path="2026/03/gone.wav"),
        record(GenerationStatus.COMPLETED, id=resized_id, file_path=resized, file_size=4),
        record(
            GenerationStatus.COMPLETED,
            id=altered_id,
            file_path=altered,
            file_size=3,
            sha256="0" * 64,
        ),
        record(
            GenerationStatus.PROCESSING,
            id=stuck_id,
            worker_id="w1",
            lease_expires_at=CREATED - timedelta(seconds=1),
        ),
        record(GenerationStatus.FAILED, id=failed_id),
    ]
    report = audit_outputs(output_dir, records, now=CREATED)
    assert not report.ok
    assert {item.relative_path for item in report.orphan_files} == {orphan, failed_leftover}
    assert [item.generation_id for item in report.stale_temp_files] == [failed_id]
    assert [r.id for r in report.missing_files] == [missing_id]
    assert {(m.record.id, m.field) for m in report.mismatches} == {
        (resized_id, "size"),
        (altered_id, "sha256"),
    }
    assert [r.id for r in report.stuck_jobs] == [stuck_id]
    text_report = "\n".join(report.problems())
    for expected in (orphan, missing_id, "sha256", "size", stuck_id, "temp"):
        assert expected in text_report


def test_files_of_running_jobs_are_not_orphans(output_dir: Path):
    running = write_output(output_dir, ID)
    temp = output_dir / Path(running).parent / f".{ID}.wav.abcd.tmp"
    temp.write_bytes(b"x")
    lease = CREATED + timedelta(seconds=30)
    report = audit_outputs(
        output_dir,
        [record(GenerationStatus.PROCESSING, worker_id="w", lease_expires_at=lease)],
        now=CREATED,
    )
    assert report.ok, report.problems()


def test_remove_temp_files_removes_only_that_jobs_temp_files(output_dir: Path):
    final = output_dir / relative_output_path(ID, CREATED)
    final.parent.mkdir(parents=True)
    mine = final.parent / f".{final.name}.abc.tmp"
    other = final.parent / ".99999999-9999-4999-8999-999999999999.wav.abc.tmp"
    for path in (mine, other, final):
        path.write_bytes(b"x")
    assert files.remove_temp_files(final) == [mine]
    assert sorted(os.listdir(final.parent)) == sorted([other.name, final.name])


def test_temp_file_pattern_matches_the_exporters_temp_files(output_dir: Path):
    # storage.files keeps its own copy of the temp-name pattern so the queue and the CLI need
    # not import the exporter (and scipy): it must match what the exporter writes.
    from dgx_music.audio.export import write_temp

    final = output_dir / "2026" / "03" / f"{ID}.wav"
    final.parent.mkdir(parents=True)
    temp = write_temp(b"RIFF", final)
    assert list(final.parent.glob(files.temp_path_pattern(final))) == [temp]
    assert files.remove_temp_files(final) == [temp]


def test_a_pooled_postgres_connection_killed_while_idle_is_replaced(
    pg_session_url: str, monkeypatch: pytest.MonkeyPatch
):
    # Connections are pinged only after sitting idle (not on every checkout): one the server
    # dropped in the meantime must be replaced without the caller seeing an error.
    from dgx_music.jobs.queue import JobManager
    from dgx_music.storage import database as database_module

    database = Database(pg_session_url)
    try:
        manager = JobManager(database)
        manager.counts_by_status()
        with database.engine.connect() as connection:
            pid = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
        with Database(pg_session_url).engine.connect() as admin:
            admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            admin.commit()
        monkeypatch.setattr(database_module, "PG_PING_AFTER_IDLE", 0.0)
        assert sum(manager.counts_by_status().values()) >= 0
        with database.engine.connect() as connection:
            assert connection.execute(text("SELECT pg_backend_pid()")).scalar_one() != pid
    finally:
        database.dispose()


def test_reads_see_only_committed_rows_and_run_in_autocommit_on_postgresql(database) -> None:
    # PostgreSQL reads come from a pool of their own, always in autocommit; writes from the main
    # pool, in transactions. Either way a read sees what a write committed, and nothing else.
    with database.read() as connection:
        read_autocommit = getattr(connection.connection.dbapi_connection, "autocommit", None)
    with database.session(write=True) as session:
        write_connection = session.connection().connection.dbapi_connection
        if database.is_sqlite:
            assert write_connection.in_transaction
        else:
            assert read_autocommit is True
            assert write_connection.autocommit is False
        session.execute(text("DELETE FROM generations"))
        seed_test_generations(session, 3)
        with database.read() as connection:
            assert connection.execute(text("SELECT count(*) FROM generations")).scalar_one() == 0
    with database.read() as connection:
        assert connection.execute(text("SELECT count(*) FROM generations")).scalar_one() == 3
    database.dispose()
    with database.read() as connection:  # a disposed database opens new connections on use
        assert connection.execute(text("SELECT count(*) FROM generations")).scalar_one() == 3
