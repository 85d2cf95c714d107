"""Workers generate queued MusicGen jobs in batches; each job still lives and ends on its own."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from dgx_music.config import get_settings
from dgx_music.generation.engine import MusicEngine
from dgx_music.generation.request import GenerationRequest
from dgx_music.jobs.queue import JobManager
from dgx_music.jobs.records import JobStatus
from dgx_music.jobs.worker import Worker
from dgx_music.storage.database import Database
from dgx_music.storage.models import Generation
from tests.utils.db_helpers import wav_files
from tests.utils.windows import SHORT_CONTEXT_SECONDS, use_short_windows

pytestmark = pytest.mark.usefixtures("warm_metadata")

#: Mixed durations (s) and prompts of the queued jobs.
DURATIONS = [0.4, 0.9, 0.25, 0.6]
PROMPTS = ["ambient pads", "fast drum and bass with a rolling bassline", "jazz", "lofi beat"]


def tiny_request(index: int) -> GenerationRequest:
    return GenerationRequest(
        prompt=PROMPTS[index % 4],
        duration=DURATIONS[index % 4],
        model="tiny",
        seed=500 + index,
    )


class CountingEngine(MusicEngine):
    """The real engine, recording how many jobs each ``generate_batch`` call got."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []

    def generate_batch(self, requests: Any, progress: Any = None, continuations: Any = None) -> Any:
        self.batches.append(len(requests))
        return super().generate_batch(requests, progress, continuations)


def drain(manager: JobManager, batch_size: int, monkeypatch: pytest.MonkeyPatch) -> CountingEngine:
    monkeypatch.setenv("DGX_MUSIC_DEVICE", "cpu")
    monkeypatch.setenv("DGX_MUSIC_TORCH_THREADS", "1")
    monkeypatch.setenv("DGX_MUSIC_BATCH_SIZE", str(batch_size))
    get_settings.cache_clear()
    engine = CountingEngine()
    worker = Worker(
        manager,
        worker_id=f"batch-{batch_size}",
        engine=engine,
        settings=get_settings(),
        exit_when_empty=True,
    )
    worker.run()
    return engine


def test_batched_jobs_complete_with_the_files_they_get_alone(
    manager: JobManager, output_dir: Path, monkeypatch: pytest.MonkeyPatch
):
    batched = [manager.submit(tiny_request(index)).id for index in range(8)]
    engine = drain(manager, 4, monkeypatch)
    assert engine.batches == [4, 4]
    alone = [manager.submit(tiny_request(index)).id for index in range(8)]
    assert drain(manager, 1, monkeypatch).batches == [1] * 8
    for index, (in_batch, solo) in enumerate(zip(batched, alone, strict=True)):
        done, reference = manager.get(in_batch), manager.get(solo)
        assert done.status is JobStatus.COMPLETED, done.error
        assert done.progress == 1.0 and done.attempts == 1
        assert done.actual_duration == pytest.approx(DURATIONS[index % 4])
        assert done.sha256 == reference.sha256, f"job {index}: the batch changed its audio"
    assert len(wav_files(output_dir)) == 16
    assert manager.check().ok


def test_a_bad_job_fails_alone_before_the_batch(
    manager: JobManager, database: Database, monkeypatch: pytest.MonkeyPatch
):
    ids = [manager.submit(tiny_request(index)).id for index in range(4)]
    # A row no request could make (another tool wrote it, or an older version's rules).
    with database.session(write=True) as session:
        session.execute(update(Generation).where(Generation.id == ids[1]).values(temperature=0.0))
    engine = drain(manager, 4, monkeypatch)
    assert engine.batches == [3]
    statuses = [manager.get(job_id).status for job_id in ids]
    assert statuses == [
        JobStatus.COMPLETED,
        JobStatus.FAILED,
        JobStatus.COMPLETED,
        JobStatus.COMPLETED,
    ]
    assert "temperature" in manager.get(ids[1]).error


def test_the_synth_is_never_batched(manager: JobManager, monkeypatch: pytest.MonkeyPatch):
    for index in range(3):
        manager.submit(GenerationRequest(prompt=f"groove {index}", duration=0.3, model="synth"))
    assert drain(manager, 4, monkeypatch).batches == [1, 1, 1]


def test_a_job_is_batched_only_with_jobs_of_as_many_windows(
    manager: JobManager, output_dir: Path, monkeypatch: pytest.MonkeyPatch
):
    # Queued short, long, short, long: the worker claims the oldest, then its mates of the same
    # band, so the 0.3 s jobs never wait for the 6.2 s ones (two windows on the short windows
    # of tests.utils.windows, as 31 s jobs are on the real ones).
    use_short_windows(monkeypatch)
    monkeypatch.setenv("DGX_MUSIC_CONTEXT_SECONDS", str(SHORT_CONTEXT_SECONDS))
    lengths = [0.3, 6.2, 0.4, 6.2]
    ids = [
        manager.submit(GenerationRequest(prompt=f"p{i}", duration=d, model="tiny", seed=i)).id
        for i, d in enumerate(lengths)
    ]
    engine = drain(manager, 4, monkeypatch)
    assert engine.batches == [2, 2]
    for job_id, seconds in zip(ids, lengths, strict=True):
        job = manager.get(job_id)
        assert job.status is JobStatus.COMPLETED, job.error
        assert job.actual_duration == pytest.approx(seconds)
    assert manager.check().ok
