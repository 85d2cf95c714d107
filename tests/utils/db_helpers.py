"""Factories for the storage, queue and job tests, and for the benchmarks that time them.

- :func:`seed_test_generations` fills the ``generations`` table fast (one multi-row INSERT per
  batch), with a chosen mix of statuses: the 100 000-row status lookups are timed on it.
- :func:`synth_request` is a valid request for the fast offline ``synth`` model.
- :class:`FakeClock` is a clock a :class:`~dgx_music.jobs.queue.JobManager` can be given, so
  leases expire without sleeping.
- :func:`stalling_worker_main` runs a worker subprocess whose job stalls (the SIGKILL tests),
  using :class:`~tests.utils.mock_helpers.MockMusicGenerationEngine`.
"""

from __future__ import annotations

import os
import random
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert, text
from sqlalchemy.orm import Session

from dgx_music.generation.request import GenerationRequest
from dgx_music.storage.database import Database
from dgx_music.storage.files import relative_output_path
from dgx_music.storage.models import Generation, GenerationStatus, Prompt, prompt_digest

#: Rows per INSERT statement when seeding.
SEED_BATCH = 5_000
#: Default mix of statuses in a seeded table: a mature history with a small live queue.
DEFAULT_STATUS_DISTRIBUTION: Mapping[GenerationStatus, float] = {
    GenerationStatus.COMPLETED: 0.85,
    GenerationStatus.FAILED: 0.05,
    GenerationStatus.CANCELLED: 0.02,
    GenerationStatus.PENDING: 0.06,
    GenerationStatus.PROCESSING: 0.02,
}
#: Environment variable: seconds a :func:`stalling_worker_main` job waits after its temp file.
STALL_VARIABLE = "DGX_MUSIC_TEST_STALL_SECONDS"


def synth_request(
    prompt: str = "test groove, 120 bpm in A minor", **changes: Any
) -> GenerationRequest:
    """A valid request for the ``synth`` model: 0.5 s, seed 1, unless ``changes`` say otherwise."""
    fields: dict[str, Any] = {"prompt": prompt, "duration": 0.5, "model": "synth", "seed": 1}
    fields.update(changes)
    return GenerationRequest(**fields)


class FakeClock:
    """A settable UTC clock; call it for the time, :meth:`advance` it to expire leases."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 1, 15, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def truncate_all(database: Database) -> None:
    """Empty both tables (PostgreSQL tests share one migrated database per session)."""
    with database.engine.begin() as connection:
        if database.is_sqlite:
            connection.execute(text("DELETE FROM generations"))
            connection.execute(text("DELETE FROM prompts"))
        else:
            connection.execute(text("TRUNCATE generations, prompts RESTART IDENTITY"))


def seed_test_generations(
    session: Session,
    count: int,
    status_distribution: Mapping[GenerationStatus | str, float] | None = None,
    *,
    distinct_prompts: int = 100,
    start: datetime | None = None,
    seed: int = 0,
) -> list[str]:
    """Insert ``count`` generation rows with statuses drawn from ``status_distribution``.

    Rows are one second apart from ``start``; completed ones carry plausible file facts (no
    file is written, so ``db check`` would report them missing). The caller commits.

    Parameters
    ----------
    session
        An open session (in a transaction).
    count
        Rows to insert.
    status_distribution
        Status -> weight; :data:`DEFAULT_STATUS_DISTRIBUTION` by default.
    distinct_prompts
        How many prompt rows the generations share.
    start
        ``created_at`` of the first row, UTC; a fixed date by default (seeded data only grows).

    Returns
    -------
    list of str
        The ids, in insertion order.
    """
    weights = {
        GenerationStatus(status): weight
        for status, weight in (status_distribution or DEFAULT_STATUS_DISTRIBUTION).items()
    }
    statuses = list(weights)
    rng = random.Random(seed)
    start = start or datetime(2025, 1, 1, tzinfo=UTC)
    suffix = uuid.UUID(int=rng.getrandbits(128)).hex[:8]
    prompt_ids = []
    for index in range(distinct_prompts):
        prompt_text = f"seeded prompt {index} ({suffix})"
        prompt_ids.append(
            session.execute(
                insert(Prompt)
                .values(
                    text=prompt_text,
                    text_sha256=prompt_digest(prompt_text),
                    use_count=0,
                    first_used_at=start,
                    last_used_at=start,
                )
                .returning(Prompt.id)
            ).scalar_one()
        )
    drawn = rng.choices(statuses, weights=[weights[status] for status in statuses], k=count)
    ids: list[str] = []
    rows: list[dict[str, Any]] = []
    for index, status in enumerate(drawn):
        created = start + timedelta(seconds=index)
        job_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        ids.append(job_id)
        rows.append(_seed_row(job_id, status, created, rng.choice(prompt_ids), rng))
        if len(rows) >= SEED_BATCH:
            session.execute(insert(Generation), rows)
            rows = []
    if rows:
        session.execute(insert(Generation), rows)
    return ids


def _seed_row(
    job_id: str, status: GenerationStatus, created: datetime, prompt_id: int, rng: random.Random
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": job_id,
        "prompt_id": prompt_id,
        "model": "synth",
        "device": None,
        "duration": 8.0,
        "seed": rng.randrange(2**32),
        "temperature": 1.0,
        "top_k": 250,
        "top_p": 0.0,
        "guidance_scale": 3.0,
        "status": status,
        "attempts": 0,
        "worker_id": None,
        "lease_expires_at": None,
        "progress": 0.0,
        "created_at": created,
        "started_at": None,
        "completed_at": None,
        "generation_seconds": None,
        "file_path": None,
        "file_size": None,
        "sha256": None,
        "sample_rate": None,
        "channels": None,
        "actual_duration": None,
        "lufs": None,
        "true_peak": None,
        "tempo_bpm": None,
        "key": None,
        "audio_metadata": None,
        "error": None,
    }
    if status is not GenerationStatus.PENDING:
        row.update(attempts=1, started_at=created + timedelta(seconds=1), device="cpu")
    if status is GenerationStatus.PROCESSING:
        row.update(
            worker_id="seeded-worker",
            lease_expires_at=created + timedelta(days=3650),
            progress=0.5,
        )
    if status is GenerationStatus.COMPLETED:
        row.update(
            completed_at=created + timedelta(seconds=5),
            generation_seconds=4.0,
            file_path=relative_output_path(job_id, created).as_posix(),
            file_size=1_024_044,
            sha256=f"{rng.getrandbits(256):064x}",
            sample_rate=32_000,
            channels=2,
            actual_duration=8.0,
            lufs=-16.0,
            true_peak=-1.2,
            tempo_bpm=float(rng.randrange(60, 180)),
            key="A minor",
            audio_metadata={"tempo_bpm": 120.0, "key": "A minor"},
            progress=1.0,
        )
    if status is GenerationStatus.FAILED:
        row.update(completed_at=created + timedelta(seconds=2), error="seeded failure")
    if status is GenerationStatus.CANCELLED:
        row.update(completed_at=created + timedelta(seconds=2), error="cancelled")
    return row


def temp_files(output_dir: Path) -> list[Path]:
    """Temp files :func:`dgx_music.audio.export.write_temp` left under ``output_dir``."""
    return sorted(output_dir.rglob(".*.tmp")) if output_dir.is_dir() else []


#: Repository root, put on PYTHONPATH so worker subprocesses can import ``tests.utils``.
REPO_ROOT = Path(__file__).resolve().parents[2]


def worker_subprocess_environment(
    database_url: str, output_dir: Path, **extra: str
) -> dict[str, str]:
    """Environment for a worker subprocess: this process's, minus every ``DGX_MUSIC_*`` setting,
    plus the test's database and directories, fast polling, one torch thread, offline, and
    ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DGX_MUSIC_")}
    env.update(
        DGX_MUSIC_DATABASE_URL=database_url,
        DGX_MUSIC_OUTPUT_DIR=str(output_dir),
        DGX_MUSIC_DATA_DIR=str(output_dir.parent / "data"),
        DGX_MUSIC_POLL_SECONDS="0.05",
        DGX_MUSIC_TORCH_THREADS="1",
        HF_HUB_OFFLINE="1",
        PYTHONPATH=str(REPO_ROOT),
        **extra,
    )
    return env


def wav_files(output_dir: Path) -> list[Path]:
    return sorted(output_dir.rglob("*.wav")) if output_dir.is_dir() else []


def stalling_worker_main(worker_id: str = "stalling-worker") -> None:
    """A worker process for the SIGKILL tests: claims one job and stalls after its temp file is
    written (during analysis) for ``$DGX_MUSIC_TEST_STALL_SECONDS``, so a test can kill it
    with the temp file on disk. Settings come from the ``DGX_MUSIC_*`` environment."""
    from dgx_music.jobs import pipeline
    from dgx_music.jobs.queue import JobManager
    from dgx_music.jobs.worker import Worker
    from dgx_music.storage.database import get_database

    stall = float(os.environ[STALL_VARIABLE])
    analyze = pipeline.analyze

    def stalled_analyze(audio: Any, sample_rate: int) -> Any:
        time.sleep(stall)
        return analyze(audio, sample_rate)

    pipeline.analyze = stalled_analyze  # type: ignore[assignment]
    Worker(JobManager(get_database()), worker_id=worker_id, max_jobs=1).run()


def stalling_pool_main() -> None:
    """``run_workers`` with its signal handlers, one thread, and an engine that stalls for
    ``$DGX_MUSIC_TEST_STALL_SECONDS`` before generating (the SIGTERM tests)."""
    from dgx_music.jobs.worker import run_workers
    from tests.utils.mock_helpers import MockMusicGenerationEngine

    stall = float(os.environ[STALL_VARIABLE])
    run_workers(1, engine=MockMusicGenerationEngine(stall, steps=20), max_jobs=1)


def drain_queue_in_forked_process(database_url: str, output_dir: str) -> None:
    """Body of a worker process forked from the test process (already imported and warmed up):
    one worker drains the queue and returns when it is empty."""
    from dgx_music.config import Settings
    from dgx_music.jobs.queue import JobManager
    from dgx_music.jobs.worker import run_workers
    from dgx_music.storage.database import close_databases

    close_databases(close_connections=False)  # the parent's pooled connections stay the parent's
    settings = Settings(database_url=database_url, output_dir=Path(output_dir), poll_seconds=0.05)
    manager = JobManager(Database(database_url), settings=settings)
    run_workers(
        1, settings=settings, manager=manager, exit_when_empty=True, install_signal_handlers=False
    )
