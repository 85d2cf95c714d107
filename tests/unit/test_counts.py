"""The maintained generation counts (migration 0002) equal ``count(*)`` on both backends.

Listing totals and ``counts_by_status`` read ``generation_counts``, which database triggers keep;
these tests compare it with the rows after every move the queue makes (random sequences), after
concurrent claims, after writes that bypass the queue (bulk seeding, raw SQL, truncation), and
after migrating a table that already held rows.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import text

from dgx_music.errors import JobStateError
from dgx_music.jobs.queue import JobManager
from dgx_music.jobs.records import Job, JobOutput, JobStatus
from dgx_music.storage.database import (
    SCHEMA_HEAD,
    Database,
    alembic_config,
    head_revision,
    upgrade,
)
from dgx_music.storage.files import relative_output_path
from tests.utils.db_helpers import (
    FakeClock,
    bulk_seed_generations,
    seed_test_generations,
    synth_request,
    truncate_all,
)

#: Random queue moves per sequence.
STEPS = 150


def assert_counts_exact(manager: JobManager) -> None:
    """Every total the queue reports equals what counting the rows gives."""
    real = manager.counted_by_rows()
    assert manager.counts_by_status() == real
    assert manager.list(limit=1)[1] == sum(real.values())
    for status in JobStatus:
        assert manager.list(status, limit=1)[1] == real[status], status


def output_for(job: Job) -> JobOutput:
    return JobOutput(
        file_path=relative_output_path(job.id, job.created_at).as_posix(),
        file_size=1,
        sha256="0" * 64,
        sample_rate=32_000,
        channels=2,
        actual_duration=0.5,
        device="cpu",
        seed=job.seed or 0,
        generation_seconds=0.01,
    )


def in_status(manager: JobManager, status: JobStatus) -> list[Job]:
    return manager.list(status, limit=1000)[0]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_counts_follow_random_queue_sequences(database: Database, seed: int):
    clock = FakeClock()
    manager = JobManager(database, clock=clock)
    rng = random.Random(seed)
    moves = [
        "submit",
        "submit",
        "claim",
        "complete",
        "fail",
        "cancel",
        "delete",
        "release",
        "heartbeat",
        "expire",
        "missing",
    ]
    for step in range(STEPS):
        move = rng.choice(moves)
        clock.advance(1)
        pending = in_status(manager, JobStatus.PENDING)
        processing = in_status(manager, JobStatus.PROCESSING)
        completed = in_status(manager, JobStatus.COMPLETED)
        if move == "submit":
            manager.submit(synth_request(prompt=f"sequence {seed} prompt {rng.randrange(5)}"))
        elif move == "claim":
            manager.claim(f"worker-{rng.randrange(3)}", lease_seconds=5)
        elif move == "complete" and processing:
            job = rng.choice(processing)
            manager.complete(job.id, job.worker_id or "", output_for(job))
        elif move == "fail" and processing:
            job = rng.choice(processing)
            manager.fail(job.id, job.worker_id or "", f"failed at step {step}")
        elif move == "cancel" and pending:
            manager.cancel(rng.choice(pending).id)
        elif move == "delete":
            everything = manager.list(limit=1000)[0]
            if everything:
                job = rng.choice(everything)
                if job.status is JobStatus.PROCESSING:
                    with pytest.raises(JobStateError):
                        manager.delete(job.id)
                else:
                    manager.delete(job.id)
        elif move == "release" and processing:
            job = rng.choice(processing)
            manager.release(job.id, job.worker_id or "", "shutting down")
        elif move == "heartbeat" and processing:
            job = rng.choice(processing)
            manager.heartbeat(job.id, job.worker_id or "", progress=0.5, lease_seconds=5)
        elif move == "expire":
            clock.advance(10)
            manager.recover_expired()
        elif move == "missing" and completed:
            manager.mark_file_missing(rng.choice(completed).id)
        assert_counts_exact(manager)
    # The sequence must have exercised the counts, not left everything at zero.
    assert sum(manager.counts_by_status().values()) > 0


def test_counts_stay_exact_under_concurrent_claims(database: Database):
    manager = JobManager(database)
    for index in range(40):
        manager.submit(synth_request(prompt=f"concurrent {index}"))
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def work(worker: str) -> None:
        try:
            barrier.wait(timeout=10)
            while (job := manager.claim(worker, lease_seconds=60)) is not None:
                if int(job.id[-1], 16) % 2:
                    manager.complete(job.id, worker, output_for(job))
                else:
                    manager.fail(job.id, worker, "odd one out")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(f"w{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    counts = manager.counts_by_status()
    assert counts[JobStatus.PENDING] == 0
    assert counts[JobStatus.COMPLETED] + counts[JobStatus.FAILED] == 40
    assert_counts_exact(manager)


def test_counts_follow_writes_that_bypass_the_queue(database: Database):
    manager = JobManager(database)
    with database.session() as session:
        seed_test_generations(session, 300)
    assert sum(manager.counts_by_status().values()) == 300
    assert_counts_exact(manager)
    with database.engine.begin() as connection:
        connection.execute(
            text("UPDATE generations SET status = 'failed' WHERE status = 'pending'")
        )
        connection.execute(text("DELETE FROM generations WHERE status = 'cancelled'"))
        # An update that leaves the status alone must not move any count.
        connection.execute(text("UPDATE generations SET progress = 0.5 WHERE status = 'failed'"))
    assert manager.counts_by_status()[JobStatus.PENDING] == 0
    assert manager.counts_by_status()[JobStatus.CANCELLED] == 0
    assert_counts_exact(manager)
    truncate_all(database)  # TRUNCATE on PostgreSQL, DELETE on SQLite
    assert manager.counts_by_status() == dict.fromkeys(JobStatus, 0)
    assert manager.list(limit=1) == ([], 0)


def test_rolled_back_changes_leave_the_counts_alone(database: Database):
    manager = JobManager(database)
    manager.submit(synth_request())
    with pytest.raises(RuntimeError), database.session() as session:
        session.execute(text("UPDATE generations SET status = 'cancelled'"))
        raise RuntimeError("roll back")
    assert manager.counts_by_status()[JobStatus.PENDING] == 1
    assert_counts_exact(manager)


@pytest.fixture(params=["sqlite", "postgresql"])
def unmigrated_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database that has never been migrated."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    from tests.utils import pg

    with pg.temporary_database(request.getfixturevalue("pg_admin_url")) as url:
        yield url


def test_migration_counts_the_rows_already_there(unmigrated_url: str):
    database = Database(unmigrated_url)
    try:
        upgrade(database, "0001")
        with database.session() as session:
            # Core inserts of the 0001 columns: the ORM model has columns of later revisions.
            bulk_seed_generations(session, 250)
        upgrade(database)
        manager = JobManager(database)
        assert sum(manager.counts_by_status().values()) == 250
        assert_counts_exact(manager)
        # Down and up again: the counts are rebuilt from the rows, not left stale.
        config = alembic_config(database)
        with database.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, "0001")
        with database.engine.begin() as connection:
            connection.execute(text("DELETE FROM generations WHERE status = 'completed'"))
        upgrade(database)
        assert_counts_exact(manager)
    finally:
        database.dispose()


def test_the_fast_schema_check_knows_the_newest_migration():
    # get_database skips Alembic when the stored revision is SCHEMA_HEAD: a new migration
    # must move it, or databases would never be upgraded to it.
    assert head_revision() == SCHEMA_HEAD
