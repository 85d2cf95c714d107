"""End-to-end workflows: request -> queue -> worker -> export -> database (spec, module 1).

Every test runs on SQLite and on PostgreSQL (the ``manager`` fixture is parametrised), with the
real pipeline and the offline ``synth`` model.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import soundfile

from dgx_music.audio import quality
from dgx_music.audio.notes import relative_key
from dgx_music.jobs import lease
from dgx_music.jobs.pipeline import generate_and_record
from dgx_music.jobs.queue import JobManager
from dgx_music.jobs.records import Job
from dgx_music.jobs.worker import Worker
from dgx_music.storage.models import GenerationStatus
from tests.utils.audio_helpers import validate_wav_file
from tests.utils.db_helpers import synth_request, wav_files
from tests.utils.mock_helpers import MockMusicGenerationEngine

pytestmark = pytest.mark.usefixtures("warm_metadata")

#: Longest a test waits for background work, seconds.
WAIT_S = 60.0


def drain(manager: JobManager, workers: int = 1) -> list[Worker]:
    """Run ``workers`` worker threads until the queue is empty; return them."""
    pool = [
        Worker(manager, worker_id=f"test-worker-{index}", exit_when_empty=True)
        for index in range(workers)
    ]
    threads = [threading.Thread(target=worker.run) for worker in pool]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT_S)
        assert not thread.is_alive(), "worker did not drain the queue in time"
    return pool


def file_of(manager: JobManager, job: Job) -> Path:
    assert job.file_path is not None
    return manager.output_dir / job.file_path


def assert_consistent(manager: JobManager) -> None:
    report = manager.check()
    assert report.ok, report.problems()


class TestCompleteWorkflow:
    def test_simple_generation_to_database(self, manager: JobManager):
        recorded = generate_and_record(synth_request(duration=2.0), manager=manager)
        stored = manager.get(recorded.job.id)
        assert stored.status is GenerationStatus.COMPLETED
        assert stored.prompt == "test groove, 120 bpm in A minor"
        assert file_of(manager, stored).is_file()
        assert stored.actual_duration == pytest.approx(2.0)

    def test_complete_workflow_with_export(self, manager: JobManager):
        job = manager.submit(synth_request(duration=2.0))
        drain(manager)
        done = manager.get(job.id)
        assert done.status is GenerationStatus.COMPLETED
        path = file_of(manager, done)
        info = soundfile.info(str(path))
        assert (done.sample_rate, done.channels) == (info.samplerate, info.channels) == (32_000, 2)
        assert done.file_size == path.stat().st_size
        assert done.lufs == pytest.approx(-16.0, abs=0.2)
        assert done.true_peak is not None and done.true_peak <= -1.0

    def test_workflow_with_metadata_extraction(self, manager: JobManager):
        job = manager.submit(synth_request("house, 126 bpm in D minor", duration=8.0, seed=4))
        drain(manager)
        done = manager.get(job.id)
        assert done.tempo_bpm is not None
        ratio = done.tempo_bpm / 126.0
        assert min(abs(ratio - multiple) for multiple in (0.5, 1.0, 2.0)) < 0.02 * max(ratio, 1)
        assert done.key in {"D minor", relative_key("D minor")}
        for field in ("integrated_lufs", "true_peak_dbtp", "loudness_range_lu", "key_confidence"):
            assert field in done.metadata

    def test_multiple_generations_sequential(self, manager: JobManager):
        results = [
            generate_and_record(synth_request(duration=1.0, seed=9), manager=manager)
            for _ in range(3)
        ]
        ids = {r.job.id for r in results}
        paths = {r.path for r in results}
        assert len(ids) == len(paths) == 3
        # Same request and seed: the same audio, byte for byte, every time.
        assert len({r.job.sha256 for r in results}) == 1

    @pytest.mark.parametrize("seconds", [4.0, 8.0, 16.0, 30.0])
    def test_workflow_with_different_durations(self, manager: JobManager, seconds: float):
        job = manager.submit(synth_request(duration=seconds))
        drain(manager)
        done = manager.get(job.id)
        assert done.status is GenerationStatus.COMPLETED
        assert done.actual_duration == pytest.approx(seconds)
        assert soundfile.info(str(file_of(manager, done))).frames == round(seconds * 32_000)

    def test_workflow_with_status_transitions(self, manager: JobManager):
        job = manager.submit(synth_request(duration=2.0))
        assert job.status is GenerationStatus.PENDING
        seen: list[GenerationStatus] = []

        class Watching(Worker):
            def run_claimed(self, claimed: Job) -> Job:
                seen.append(self.manager.get(claimed.id).status)
                return super().run_claimed(claimed)

        worker = Watching(manager, worker_id="watcher", exit_when_empty=True)
        worker.run()
        final = manager.get(job.id)
        seen.append(final.status)
        assert seen == [GenerationStatus.PROCESSING, GenerationStatus.COMPLETED]
        assert final.started_at is not None and final.completed_at is not None
        assert final.created_at <= final.started_at <= final.completed_at
        assert final.attempts == 1

    def test_concurrent_database_writes(self, manager: JobManager):
        with ThreadPoolExecutor(max_workers=6) as pool:
            jobs = list(
                pool.map(lambda i: manager.submit(synth_request(f"take {i % 3}", seed=i)), range(8))
            )
        assert len({job.id for job in jobs}) == 8
        drain(manager, workers=2)
        completed, total = manager.list(status=GenerationStatus.COMPLETED, limit=100)
        assert total == 8
        assert len({job.file_path for job in completed}) == 8


class TestAsyncJobQueue:
    def test_job_status_polling(self, manager: JobManager, monkeypatch: pytest.MonkeyPatch):
        """A client polling a job sees it pending, then processing with rising progress, then
        completed with its file."""
        # Progress is written at most once a second in service; every step here, so a 1 s job
        # shows several intermediate values to the poller.
        monkeypatch.setattr(lease, "PROGRESS_INTERVAL", 0.0)
        job = manager.submit(synth_request(duration=1.0))
        polled = [manager.get(job.id)]
        engine = MockMusicGenerationEngine(1.0, steps=10)
        worker = Worker(manager, worker_id="poller-target", engine=engine, exit_when_empty=True)
        thread = threading.Thread(target=worker.run)
        thread.start()
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline and not polled[-1].is_finished:
            time.sleep(0.02)
            polled.append(manager.get(job.id))
        thread.join(WAIT_S)
        statuses = [snapshot.status for snapshot in polled]
        progress = [snapshot.progress for snapshot in polled]
        assert statuses[0] is GenerationStatus.PENDING and progress[0] == 0.0
        assert statuses[-1] is GenerationStatus.COMPLETED and progress[-1] == 1.0
        assert polled[-1].file_path and file_of(manager, polled[-1]).is_file()
        # Statuses only move forward: pending..., processing..., completed.
        order = [GenerationStatus.PENDING, GenerationStatus.PROCESSING, GenerationStatus.COMPLETED]
        assert [order.index(s) for s in statuses] == sorted(order.index(s) for s in statuses)
        running = [
            p for s, p in zip(statuses, progress, strict=True) if s is GenerationStatus.PROCESSING
        ]
        assert len({p for p in running if 0.0 < p < 1.0}) >= 3, running  # several steps seen
        assert progress == sorted(progress), "progress went backwards"

    def test_retrieving_completed_jobs(self, manager: JobManager):
        submitted = [manager.submit(synth_request(seed=i)) for i in range(3)]
        drain(manager)
        listed, total = manager.list(status=GenerationStatus.COMPLETED)
        assert total == 3
        assert [job.id for job in listed] == [job.id for job in reversed(submitted)]
        for job in listed:
            assert manager.get(job.id).file_path == job.file_path

    def test_pending_jobs_queue(self, manager: JobManager):
        submitted = [manager.submit(synth_request(seed=i)) for i in range(4)]
        pending, total = manager.list(status=GenerationStatus.PENDING)
        assert total == 4
        assert {job.id for job in pending} == {job.id for job in submitted}
        # Oldest first: claims follow submission order.
        claimed = [manager.claim("fifo-check") for _ in submitted]
        assert [job.id for job in claimed if job] == [job.id for job in submitted]
        assert manager.claim("fifo-check") is None


class TestFileAndDatabaseSync:
    @pytest.fixture
    def finished(self, manager: JobManager) -> list[Job]:
        for index in range(3):
            manager.submit(synth_request(seed=index))
        generate_and_record(synth_request(seed=99), manager=manager)
        drain(manager)
        jobs, _ = manager.list(limit=100)
        return jobs

    def test_file_creation_matches_database(self, manager: JobManager, finished: list[Job]):
        on_disk = {p.relative_to(manager.output_dir) for p in wav_files(manager.output_dir)}
        in_rows = {Path(job.file_path) for job in finished if job.file_path}
        assert on_disk == in_rows and len(in_rows) == 4

    def test_database_records_match_files(self, manager: JobManager, finished: list[Job]):
        import hashlib

        for job in finished:
            path = file_of(manager, job)
            assert path.stat().st_size == job.file_size
            assert hashlib.sha256(path.read_bytes()).hexdigest() == job.sha256

    def test_wav_file_playable(self, manager: JobManager, finished: list[Job]):
        for job in finished:
            report = validate_wav_file(file_of(manager, job))
            assert report["valid"], report
            data, rate = soundfile.read(str(file_of(manager, job)))
            assert data.shape == (report["frames"], 2) and rate == 32_000

    def test_complete_workflow_quality_check(self, manager: JobManager, finished: list[Job]):
        for job in finished:
            report = quality.check_wav(file_of(manager, job))
            assert report.ok, report.problems
        assert_consistent(manager)

    def test_concurrent_database_writes(self, manager: JobManager):
        for index in range(4):
            manager.submit(synth_request(seed=index))
        worker = Worker(manager, worker_id="sync-worker", exit_when_empty=True)
        thread = threading.Thread(target=worker.run)
        thread.start()
        direct = [
            generate_and_record(synth_request(seed=50 + i), manager=manager) for i in range(2)
        ]
        thread.join(WAIT_S)
        assert not thread.is_alive()
        _, total = manager.list(status=GenerationStatus.COMPLETED)
        assert total == 6
        assert all(result.path.is_file() for result in direct)
        assert_consistent(manager)
