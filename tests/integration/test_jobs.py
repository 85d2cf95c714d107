"""The job pipeline and workers end to end: real synth generations, real files, real databases."""

from __future__ import annotations

import itertools
import multiprocessing
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from dgx_music.audio import quality
from dgx_music.errors import GenerationError
from dgx_music.jobs.pipeline import generate_and_record, run_job
from dgx_music.jobs.queue import JobManager
from dgx_music.jobs.records import JobStatus
from dgx_music.jobs.worker import Worker, run_workers
from dgx_music.storage.database import Database
from dgx_music.storage.files import file_sha256
from tests.utils.db_helpers import (
    drain_queue_in_forked_process,
    synth_request,
    temp_files,
    wav_files,
    worker_subprocess_environment,
)
from tests.utils.mock_helpers import MockMusicGenerationEngine
from tests.utils.processes import finish

pytestmark = pytest.mark.usefixtures("warm_metadata")


def assert_file_matches_row(output_dir: Path, job) -> Path:
    assert job.status is JobStatus.COMPLETED, job.error
    path = output_dir / job.file_path
    assert path.stat().st_size == job.file_size
    assert file_sha256(path) == job.sha256
    return path


def test_run_job_writes_the_file_and_completes_the_row(manager: JobManager, output_dir: Path):
    job = manager.submit(synth_request("house groove, 124 bpm in C major", duration=4.0))
    claimed = manager.claim("w1")
    seen: list[tuple[int, int]] = []
    done = run_job(manager, claimed, worker_id="w1", progress=lambda d, t: seen.append((d, t)))
    assert done.id == job.id
    path = assert_file_matches_row(output_dir, done)
    assert path.relative_to(output_dir).parts[:2] == (
        f"{job.created_at:%Y}",
        f"{job.created_at:%m}",
    )
    assert path.name == f"{job.id}.wav"  # no user text in the file name
    report = quality.check_wav(path, flags=tuple(done.metadata["flags"]))
    assert report.ok, report.problems
    assert done.actual_duration == pytest.approx(4.0)
    assert done.lufs == pytest.approx(-16.0, abs=0.2)
    assert done.tempo_bpm == pytest.approx(124, rel=0.04)
    assert done.metadata["reported"] == {"tempo_bpm": 124.0, "key": "C major"}
    assert done.progress == 1.0
    assert done.device == "cpu"
    assert seen and seen[-1][0] == seen[-1][1]
    assert temp_files(output_dir) == []
    assert manager.check().ok


def test_a_generation_error_fails_the_job_with_its_message(manager: JobManager, output_dir: Path):
    manager.submit(synth_request())
    claimed = manager.claim("w1")
    engine = MockMusicGenerationEngine(
        fail_with=GenerationError("the model produced silence; try another seed")
    )
    failed = run_job(manager, claimed, worker_id="w1", engine=engine)
    assert failed.status is JobStatus.FAILED
    assert failed.error == "the model produced silence; try another seed"
    assert wav_files(output_dir) == [] and temp_files(output_dir) == []


def test_an_unexpected_error_fails_the_job_and_points_at_the_log(manager: JobManager):
    manager.submit(synth_request())
    claimed = manager.claim("w1")
    failed = run_job(
        manager,
        claimed,
        worker_id="w1",
        engine=MockMusicGenerationEngine(fail_with=KeyError("bug")),
    )
    assert failed.status is JobStatus.FAILED
    assert "unexpected KeyError" in failed.error and "log" in failed.error


def test_a_worker_drains_the_queue_and_stops_when_empty(manager: JobManager, output_dir: Path):
    ids = [manager.submit(synth_request(f"p{i}", seed=i)).id for i in range(3)]
    worker = Worker(manager, worker_id="w1", exit_when_empty=True)
    assert worker.run() == 3
    for job_id in ids:
        job = manager.get(job_id)
        assert_file_matches_row(output_dir, job)
        assert (job.worker_id, job.attempts) == ("w1", 1)
    assert manager.check().ok


def test_on_finished_hears_each_completed_and_failed_job_once(manager: JobManager):
    good = [manager.submit(synth_request(f"p{i}", seed=i)).id for i in range(2)]
    told: list[tuple[str, JobStatus]] = []

    def record(job) -> None:
        told.append((job.id, job.status))
        raise RuntimeError("a broken observer must not fail the job")

    worker = Worker(manager, worker_id="w1", exit_when_empty=True, on_finished=record)
    assert worker.run() == 2
    assert sorted(told) == sorted((job_id, JobStatus.COMPLETED) for job_id in good)
    assert all(manager.get(job_id).status is JobStatus.COMPLETED for job_id in good)

    bad = manager.submit(synth_request("p-bad")).id
    failing = Worker(
        manager,
        worker_id="w2",
        engine=MockMusicGenerationEngine(0.1, fail_with=GenerationError("no")),
        exit_when_empty=True,
        on_finished=lambda job: told.append((job.id, job.status)),
    )
    failing.run()
    assert told[-1] == (bad, JobStatus.FAILED)


def test_an_aborted_worker_releases_its_job(manager: JobManager, output_dir: Path):
    job = manager.submit(synth_request())
    told: list[object] = []
    worker = Worker(
        manager,
        worker_id="w1",
        engine=MockMusicGenerationEngine(5.0, steps=50),
        on_finished=told.append,
    )
    claimed = manager.claim("w1")
    timer = threading.Timer(0.3, worker.abort.set)
    timer.start()
    started = time.monotonic()
    released = worker.run_claimed(claimed)
    timer.cancel()
    assert time.monotonic() - started < 4
    assert released.id == job.id
    assert released.status is JobStatus.PENDING
    assert released.attempts == 0
    assert "stopped" in released.error
    assert told == []  # released, not finished: another worker will end it
    assert wav_files(output_dir) == [] and temp_files(output_dir) == []


def test_the_heartbeat_keeps_a_long_job_leased(
    database: Database, output_dir: Path, monkeypatch: pytest.MonkeyPatch
):
    from dgx_music.config import get_settings

    monkeypatch.setenv("DGX_MUSIC_LEASE_SECONDS", "1.0")
    monkeypatch.setenv("DGX_MUSIC_HEARTBEAT_SECONDS", "0.1")
    get_settings.cache_clear()
    manager = JobManager(database)
    job = manager.submit(synth_request())
    # 1.5 s of generation without progress callbacks: only the heartbeat thread renews.
    worker = Worker(manager, worker_id="w1", engine=MockMusicGenerationEngine(1.5, steps=1))
    rival = JobManager(database)
    stop_rival = threading.Event()
    recovered: list[int] = []

    def recover_all_the_time() -> None:
        while not stop_rival.wait(0.1):
            recovered.append(rival.recover_expired())

    thread = threading.Thread(target=recover_all_the_time)
    thread.start()
    try:
        done = worker.run_once()
    finally:
        stop_rival.set()
        thread.join(timeout=10)
    assert sum(recovered) == 0
    assert done.id == job.id
    assert_file_matches_row(output_dir, done)


def test_run_workers_with_threads(manager: JobManager, output_dir: Path):
    """Two worker threads share the queue: both take jobs, and their jobs run at once."""
    ids = [manager.submit(synth_request(f"p{i}", seed=i, duration=0.45)).id for i in range(6)]
    # Each job holds its worker for 0.3 s, so one thread cannot drain the queue alone before
    # the other claims.
    engine = MockMusicGenerationEngine(0.3, steps=3)
    processed = run_workers(
        2, manager=manager, engine=engine, exit_when_empty=True, install_signal_handlers=False
    )
    assert processed == 6 and engine.calls == 6
    jobs = [manager.get(job_id) for job_id in ids]
    for job in jobs:
        assert_file_matches_row(output_dir, job)
    by_worker = Counter(job.worker_id for job in jobs)
    assert len(by_worker) == 2 and min(by_worker.values()) >= 2, by_worker
    # Two jobs of different workers overlapped in time: the threads really ran concurrently.
    overlapping = any(
        a.worker_id != b.worker_id
        and a.started_at < b.completed_at
        and b.started_at < a.completed_at
        for a, b in itertools.combinations(jobs, 2)
    )
    assert overlapping, [(job.worker_id, job.started_at, job.completed_at) for job in jobs]
    assert manager.check().ok


def test_generate_and_record_stores_a_completed_generation(manager: JobManager, tmp_path: Path):
    out = tmp_path / "copy.wav"
    recorded = generate_and_record(synth_request(duration=1.0), out=out, manager=manager)
    job = manager.get(recorded.job.id)
    path = assert_file_matches_row(manager.output_dir, job)
    assert recorded.path == out
    assert out.read_bytes() == path.read_bytes()
    assert job.attempts == 1 and job.worker_id.startswith("cli-")
    assert recorded.summary()["id"] == job.id
    assert manager.check().ok


# --- many worker processes ------------------------------------------------------------------------


def assert_every_job_completed_once(manager: JobManager, output_dir: Path, ids: set[str]) -> None:
    found, total = manager.list(limit=len(ids) + 10)
    assert total == len(ids)
    assert {job.id for job in found} == ids
    for job in found:
        assert job.attempts == 1, job  # nobody ran a job twice
        assert_file_matches_row(output_dir, job)
    assert len(wav_files(output_dir)) == len(ids)
    assert temp_files(output_dir) == []
    assert len({job.worker_id for job in found}) > 1, "only one process got work"
    report = manager.check()
    assert report.ok, report.problems()


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_two_cli_worker_processes_drain_the_queue(
    database: Database, database_url: str, output_dir: Path
):
    manager = JobManager(database)
    ids = {manager.submit(synth_request(f"p{i % 7}", seed=i, duration=0.2)).id for i in range(24)}
    # Each process stops after half the jobs, so both must take some whatever their start-up
    # skew (processes make their first analysis one at a time: numba's cache has no lock of
    # its own, see dgx_music.audio.numba_cache; the second starts about 1 s after the first).
    command = [
        *(sys.executable, "-m", "dgx_music.cli", "worker"),
        *("--exit-when-empty", "--max-jobs", "12"),
    ]
    env = worker_subprocess_environment(database_url, output_dir)
    workers = [
        subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for _ in range(2)
    ]
    for process in workers:
        out = finish(process, timeout=120)
        assert process.returncode == 0, out
        assert "workers stopped after 12 jobs" in out
    assert_every_job_completed_once(manager, output_dir, ids)


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_four_worker_processes_drain_100_jobs(
    database: Database, database_url: str, output_dir: Path
):
    manager = JobManager(database)
    ids = {manager.submit(synth_request(f"p{i % 7}", seed=i, duration=0.2)).id for i in range(100)}
    # Forked from this process, so each worker starts already imported and warmed up; the
    # two-process test above starts real `dgx-music worker` processes instead.
    context = multiprocessing.get_context("fork")
    workers = [
        context.Process(target=drain_queue_in_forked_process, args=(database_url, str(output_dir)))
        for _ in range(4)
    ]
    for process in workers:
        process.start()
    for process in workers:
        process.join(timeout=120)
        if process.is_alive():
            process.kill()
            process.join()
        assert process.exitcode == 0
    assert_every_job_completed_once(manager, output_dir, ids)
