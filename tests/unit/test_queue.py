"""The job queue on SQLite and PostgreSQL: every transition, leases, recovery, listing."""

from __future__ import annotations

import math
import threading
from datetime import timedelta
from pathlib import Path

import pytest

from dgx_music.config import get_settings
from dgx_music.errors import JobStateError, LeaseLostError, NotFoundError
from dgx_music.jobs.queue import JobManager
from dgx_music.jobs.records import Job, JobOutput, JobStatus
from dgx_music.jobs.transitions import check_transition
from dgx_music.storage.database import Database
from dgx_music.storage.files import relative_output_path
from dgx_music.storage.models import Prompt
from tests.utils.db_helpers import FakeClock, synth_request


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def queue(database: Database, clock: FakeClock) -> JobManager:
    return JobManager(database, clock=clock)


def output_for(job: Job, **changes) -> JobOutput:
    fields = {
        "file_path": relative_output_path(job.id, job.created_at).as_posix(),
        "file_size": 1234,
        "sha256": "ab" * 32,
        "sample_rate": 32_000,
        "channels": 2,
        "actual_duration": 0.5,
        "device": "cpu",
        "seed": job.seed,
        "generation_seconds": 0.01,
        "lufs": -16.0,
        "true_peak": -1.5,
        "tempo_bpm": 120.0,
        "key": "A minor",
        "metadata": {"tempo_bpm": 120.0, "flags": []},
    }
    fields.update(changes)
    return JobOutput(**fields)


# --- submit and claim -------------------------------------------------------------------------


def test_submit_queues_a_pending_job_with_a_fixed_seed(queue: JobManager, clock: FakeClock):
    job = queue.submit(synth_request(seed=None, duration=2.0, top_k=10))
    assert job.status is JobStatus.PENDING
    assert job.seed is not None  # chosen now, so a retry renders the same audio
    assert (job.model, job.duration, job.top_k, job.attempts) == ("synth", 2.0, 10, 0)
    assert job.created_at == clock.now
    assert queue.get(job.id) == job


def test_a_prompt_is_stored_once_and_counted(queue: JobManager, database: Database):
    long_prompt = "🎵" * 1000  # 4000 bytes of UTF-8: too big for a b-tree entry on PostgreSQL
    for _ in range(3):
        queue.submit(synth_request(long_prompt))
    queue.submit(synth_request("something else"))
    with database.session() as session:
        prompts = {row.text: row.use_count for row in session.query(Prompt)}
    assert prompts == {long_prompt: 3, "something else": 1}
    assert queue.list()[0][0].prompt in prompts


def test_claim_takes_the_oldest_pending_job(queue: JobManager, clock: FakeClock):
    first = queue.submit(synth_request("first"))
    clock.advance(1)
    queue.submit(synth_request("second"))
    claimed = queue.claim("w1", lease_seconds=30)
    assert claimed is not None
    assert claimed.id == first.id
    assert claimed.status is JobStatus.PROCESSING
    assert claimed.worker_id == "w1"
    assert claimed.attempts == 1
    assert claimed.started_at == clock.now
    assert claimed.lease_expires_at == clock.now + timedelta(seconds=30)


def test_claim_more_takes_the_oldest_pending_jobs_of_one_model(queue: JobManager, clock: FakeClock):
    jobs = []
    for index, model in enumerate(["tiny", "synth", "tiny", "tiny", "tiny", "tiny"]):
        jobs.append(queue.submit(synth_request(f"p{index}", model=model)))
        clock.advance(1)
    lead = queue.claim("w1", lease_seconds=30)  # what a worker claims first, then its mates
    assert lead is not None and lead.id == jobs[0].id
    queue.cancel(jobs[3].id)
    mates = queue.claim_more("w1", model="tiny", limit=2, lease_seconds=30)
    assert [job.id for job in mates] == [jobs[2].id, jobs[4].id]  # oldest first, no synth
    for job in mates:
        assert job.status is JobStatus.PROCESSING and job.worker_id == "w1"
        assert job.attempts == 1 and job.lease_expires_at == clock.now + timedelta(seconds=30)
    assert queue.claim_more("w2", model="tiny", limit=0) == []
    assert [job.id for job in queue.claim_more("w2", model="tiny", limit=5)] == [jobs[5].id]
    assert queue.claim_more("w2", model="tiny", limit=5) == []
    assert queue.get(jobs[1].id).status is JobStatus.PENDING


def test_claim_more_keeps_to_a_band_of_durations(queue: JobManager, clock: FakeClock):
    # A worker batches a job with jobs of as many windows: a 10 s job never waits on a 200 s one.
    jobs = []
    for index, seconds in enumerate([10.0, 200.0, 30.0, 30.5, 5.0, 190.0]):
        jobs.append(queue.submit(synth_request(f"p{index}", model="tiny", duration=seconds)))
        clock.advance(1)
    assert queue.claim("w1") is not None
    short = queue.claim_more("w1", model="tiny", limit=5, durations=(0.0, 30.0))
    assert [job.id for job in short] == [jobs[2].id, jobs[4].id]
    long = queue.claim_more("w1", model="tiny", limit=5, durations=(186.0, 204.0))
    assert [job.id for job in long] == [jobs[1].id, jobs[5].id]
    assert queue.get(jobs[3].id).status is JobStatus.PENDING  # 30.5 s: two windows


def test_a_job_never_starts_before_it_was_created(database: Database):
    # A worker reads its clock, then a job is submitted and committed, then the worker's claim
    # statement runs and takes it (seen on CI: started 6 ms before created).
    submit_clock = FakeClock()
    job = JobManager(database, clock=submit_clock).submit(synth_request())
    worker_clock = FakeClock(submit_clock.now - timedelta(milliseconds=6))
    claimed = JobManager(database, clock=worker_clock).claim("w1")
    assert claimed is not None and claimed.id == job.id
    assert claimed.started_at == job.created_at
    later = FakeClock(submit_clock.now + timedelta(seconds=1))
    second = JobManager(database, clock=submit_clock).submit(synth_request("later"))
    assert JobManager(database, clock=later).claim("w2").started_at == later.now
    assert second.created_at < later.now


def test_claim_returns_none_when_nothing_is_pending(queue: JobManager):
    assert queue.claim("w1") is None
    job = queue.submit(synth_request())
    queue.cancel(job.id)
    assert queue.claim("w1") is None


def test_concurrent_claims_never_share_a_job(database_url: str, database: Database):
    """Threads with their own connection pools race for 20 jobs: each is claimed once."""
    JobManager(database).submit(synth_request())  # migrate and warm the shared database
    for _ in range(19):
        JobManager(database).submit(synth_request())
    managers = [JobManager(Database(database_url)) for _ in range(4)]
    claimed: list[str] = []
    barrier = threading.Barrier(len(managers))
    errors: list[BaseException] = []

    def drain(manager: JobManager, name: str) -> None:
        try:
            barrier.wait(timeout=10)
            while (job := manager.claim(name)) is not None:
                claimed.append(job.id)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=drain, args=(m, f"w{i}")) for i, m in enumerate(managers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for manager in managers:
        manager.database.dispose()
    assert errors == []
    assert len(claimed) == 20
    assert len(set(claimed)) == 20


# --- heartbeat, complete, fail ------------------------------------------------------------------


def test_heartbeat_extends_the_lease_and_records_progress(queue: JobManager, clock: FakeClock):
    queue.submit(synth_request())
    job = queue.claim("w1", lease_seconds=10)
    clock.advance(8)
    queue.heartbeat(job.id, "w1", progress=0.4, lease_seconds=10)
    stored = queue.get(job.id)
    assert stored.lease_expires_at == clock.now + timedelta(seconds=10)
    assert stored.progress == pytest.approx(0.4)


def test_only_the_lease_holder_can_heartbeat_complete_or_fail(queue: JobManager):
    queue.submit(synth_request())
    job = queue.claim("w1")
    with pytest.raises(LeaseLostError, match="w2 no longer holds"):
        queue.heartbeat(job.id, "w2")
    with pytest.raises(LeaseLostError):
        queue.complete(job.id, "w2", output_for(job))
    with pytest.raises(LeaseLostError):
        queue.fail(job.id, "w2", "nope")
    with pytest.raises(LeaseLostError):
        queue.release(job.id, "w2", "nope")
    assert queue.get(job.id).status is JobStatus.PROCESSING


def test_complete_records_the_file_facts(queue: JobManager, clock: FakeClock):
    queue.submit(synth_request())
    job = queue.claim("w1")
    clock.advance(3)
    done = queue.complete(job.id, "w1", output_for(job))
    assert done.status is JobStatus.COMPLETED
    assert done.completed_at == clock.now
    assert done.lease_expires_at is None
    assert done.progress == 1.0
    assert (done.file_size, done.sample_rate, done.channels) == (1234, 32_000, 2)
    assert (done.lufs, done.tempo_bpm, done.key) == (-16.0, 120.0, "A minor")
    assert done.metadata == {"tempo_bpm": 120.0, "flags": []}
    assert queue.get(job.id) == done
    with pytest.raises(LeaseLostError, match="completed"):
        queue.complete(job.id, "w1", output_for(job))


def test_undefined_measurements_are_stored_as_null(queue: JobManager):
    queue.submit(synth_request())
    job = queue.claim("w1")
    done = queue.complete(
        job.id,
        "w1",
        output_for(
            job, lufs=-math.inf, tempo_bpm=None, metadata={"lufs": -math.inf, "x": [math.nan]}
        ),
    )
    assert done.lufs is None
    assert done.metadata == {"lufs": None, "x": [None]}


def test_fail_records_the_message(queue: JobManager):
    queue.submit(synth_request())
    job = queue.claim("w1")
    failed = queue.fail(job.id, "w1", "cannot write x: disk full")
    assert failed.status is JobStatus.FAILED
    assert failed.error == "cannot write x: disk full"
    assert failed.file_path is None
    with pytest.raises(LeaseLostError):
        queue.heartbeat(job.id, "w1")


# --- cancel, release, delete ------------------------------------------------------------------


def test_only_pending_jobs_can_be_cancelled(queue: JobManager):
    pending = queue.submit(synth_request())
    assert queue.cancel(pending.id).status is JobStatus.CANCELLED
    with pytest.raises(JobStateError, match="cancelled"):
        queue.cancel(pending.id)
    queue.submit(synth_request())
    running = queue.claim("w1")
    with pytest.raises(JobStateError, match="processing"):
        queue.cancel(running.id)
    assert queue.claim("w2") is None


def test_release_gives_the_job_back_without_using_an_attempt(queue: JobManager):
    queue.submit(synth_request())
    job = queue.claim("w1")
    released = queue.release(job.id, "w1", "worker stopping")
    assert released.status is JobStatus.PENDING
    assert released.attempts == 0
    assert released.worker_id is None
    again = queue.claim("w2")
    assert (again.id, again.attempts) == (job.id, 1)


def test_delete_cancels_pending_refuses_processing_and_removes_finished(
    queue: JobManager, output_dir: Path
):
    pending = queue.submit(synth_request("a"))
    assert queue.delete(pending.id).status is JobStatus.CANCELLED
    assert queue.get(pending.id).status is JobStatus.CANCELLED

    queue.submit(synth_request("b"))
    running = queue.claim("w1")
    with pytest.raises(JobStateError, match="being processed"):
        queue.delete(running.id)

    output = output_for(running)
    path = output_dir / output.file_path
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"wav")
    queue.complete(running.id, "w1", output)
    queue.delete(running.id)
    assert not path.exists()
    with pytest.raises(NotFoundError):
        queue.get(running.id)


def test_unknown_and_malformed_ids_are_not_found(queue: JobManager):
    with pytest.raises(NotFoundError, match="no generation"):
        queue.get("6f1c0e0e-0000-4000-8000-000000000000")
    for operation in (queue.get, queue.cancel, queue.delete):
        with pytest.raises(NotFoundError):
            operation("not-a-uuid'; DROP TABLE generations; --")
    with pytest.raises(NotFoundError):
        queue.heartbeat("6f1c0e0e-0000-4000-8000-000000000000", "w1")


# --- recovery ---------------------------------------------------------------------------------


def test_expired_leases_are_requeued_then_failed_after_max_attempts(
    database: Database, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("DGX_MUSIC_MAX_ATTEMPTS", "2")
    get_settings.cache_clear()
    queue = JobManager(database, clock=clock)
    job = queue.submit(synth_request())

    queue.claim("w1", lease_seconds=5)
    clock.advance(4)
    assert queue.recover_expired() == 0  # still leased
    clock.advance(2)
    assert queue.recover_expired() == 1
    requeued = queue.get(job.id)
    assert requeued.status is JobStatus.PENDING
    assert "attempt 1 of 2" in requeued.error and "w1" in requeued.error
    with pytest.raises(LeaseLostError):
        queue.complete(job.id, "w1", output_for(job))  # the dead worker woke up too late

    queue.claim("w2", lease_seconds=5)
    clock.advance(6)
    assert queue.recover_expired() == 1
    failed = queue.get(job.id)
    assert failed.status is JobStatus.FAILED
    assert "gave up after 2 attempts" in failed.error
    assert queue.claim("w3") is None


def test_recovery_removes_the_dead_workers_partial_files(
    queue: JobManager, clock: FakeClock, output_dir: Path
):
    job = queue.submit(synth_request())
    queue.claim("w1", lease_seconds=1)
    final = output_dir / relative_output_path(job.id, job.created_at)
    final.parent.mkdir(parents=True)
    temp = final.parent / f".{final.name}.dead.tmp"
    temp.write_bytes(b"partial")
    final.write_bytes(b"renamed but never recorded")
    clock.advance(2)
    assert queue.recover_expired() == 1
    assert not temp.exists()
    assert not final.exists()


# --- reading ----------------------------------------------------------------------------------


def test_list_is_newest_first_with_filter_and_total(queue: JobManager, clock: FakeClock):
    ids = []
    for index in range(5):
        ids.append(queue.submit(synth_request(f"p{index}")).id)
        clock.advance(1)
    queue.cancel(ids[1])
    jobs, total = queue.list(limit=2)
    assert total == 5
    assert [job.id for job in jobs] == [ids[4], ids[3]]
    jobs, total = queue.list(limit=2, offset=2)
    assert [job.id for job in jobs] == [ids[2], ids[1]]
    jobs, total = queue.list(JobStatus.PENDING)
    assert total == 4
    assert ids[1] not in {job.id for job in jobs}


def test_counts_by_status_lists_every_status(queue: JobManager):
    for _ in range(3):
        queue.submit(synth_request())
    queue.claim("w1")
    counts = queue.counts_by_status()
    assert counts == {
        JobStatus.PENDING: 2,
        JobStatus.PROCESSING: 1,
        JobStatus.COMPLETED: 0,
        JobStatus.FAILED: 0,
        JobStatus.CANCELLED: 0,
    }


# --- without a database -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("current", "target", "allowed"),
    [
        (JobStatus.PENDING, JobStatus.PROCESSING, True),
        (JobStatus.PENDING, JobStatus.CANCELLED, True),
        (JobStatus.PENDING, JobStatus.COMPLETED, False),
        (JobStatus.PROCESSING, JobStatus.COMPLETED, True),
        (JobStatus.PROCESSING, JobStatus.FAILED, True),
        (JobStatus.PROCESSING, JobStatus.PENDING, True),
        (JobStatus.PROCESSING, JobStatus.CANCELLED, False),
        (JobStatus.COMPLETED, JobStatus.PENDING, False),
        (JobStatus.FAILED, JobStatus.PENDING, False),
        (JobStatus.CANCELLED, JobStatus.PROCESSING, False),
    ],
)
def test_transitions(current: JobStatus, target: JobStatus, allowed: bool):
    if allowed:
        check_transition("j", current, target)
    else:
        with pytest.raises(JobStateError, match=f"j is {current.value}"):
            check_transition("j", current, target)


def test_job_is_frozen_and_evolves(clock: FakeClock):
    job = Job(
        id="j",
        prompt="p",
        status=JobStatus.PENDING,
        model="synth",
        device=None,
        duration=1.0,
        seed=1,
        temperature=1.0,
        top_k=250,
        top_p=0.0,
        guidance_scale=3.0,
        attempts=0,
        worker_id=None,
        lease_expires_at=None,
        progress=0.0,
        created_at=clock.now,
        started_at=None,
        completed_at=None,
        generation_seconds=None,
        file_path=None,
        file_size=None,
        sha256=None,
        sample_rate=None,
        channels=None,
        actual_duration=None,
        lufs=None,
        true_peak=None,
        tempo_bpm=None,
        key=None,
    )
    with pytest.raises(AttributeError):
        job.status = JobStatus.FAILED  # type: ignore[misc]
    assert job.evolve(status=JobStatus.FAILED).status is JobStatus.FAILED
    assert job.request().prompt == "p"
    assert not job.is_finished


def test_file_records_walks_the_whole_table_in_batches(
    queue: JobManager, database: Database, monkeypatch: pytest.MonkeyPatch
):
    from dgx_music.jobs import maintenance
    from tests.utils.db_helpers import bulk_seed_generations

    with database.session() as session:
        ids = bulk_seed_generations(session, 25, distinct_prompts=3)
    monkeypatch.setattr(maintenance, "SCAN_BATCH", 7)
    records = list(queue.file_records())
    assert sorted(record.id for record in records) == sorted(ids)
    completed = [record for record in records if record.status is JobStatus.COMPLETED]
    assert all(record.file_path and record.sha256 for record in completed)
