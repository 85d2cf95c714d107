"""Factories and checks for the storage, queue and job tests, and for the benchmarks.

- :func:`bulk_seed_generations` (the asv suite's seeder, :mod:`benchmarks.seeding`) fills the
  ``generations`` table fast with a chosen mix of statuses and returns the ids;
  :func:`seed_test_generations` is the spec's version: it returns the ORM rows.
- :func:`verify_database_consistency`, :func:`get_orphaned_files`, :func:`get_orphaned_records`
  check a session's rows against the outputs directory, written independently of
  :meth:`dgx_music.jobs.queue.JobManager.check` so the two can be held against each other.
- :func:`create_generation_with_file` records a WAV file that already exists;
  :func:`cleanup_test_files` deletes the files of given rows.
- :func:`synth_request` is a valid request for the fast offline ``synth`` model.
- :class:`FakeClock` is a clock a :class:`~dgx_music.jobs.queue.JobManager` can be given, so
  leases expire without sleeping.
- :func:`stalling_worker_main` runs a worker subprocess whose job stalls (the SIGKILL tests),
  using :class:`~tests.utils.mock_helpers.MockMusicGenerationEngine`.
"""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import soundfile
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from benchmarks.seeding import SEED_BATCH, bulk_seed_generations
from dgx_music.config import get_settings
from dgx_music.generation.request import GenerationRequest
from dgx_music.storage.database import Database
from dgx_music.storage.models import Generation, GenerationStatus, Prompt, prompt_digest

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
    count: int = 10,
    status_distribution: Mapping[GenerationStatus | str, float] | None = None,
    **options: Any,
) -> list[Generation]:
    """Insert ``count`` generation rows and return them as ORM objects, in insertion order.

    The spec's seeder: :func:`bulk_seed_generations` does the inserting (``options`` go to it),
    then the rows are loaded through ``session``. The caller commits.

    Returns
    -------
    list of Generation
        The new rows, oldest first.
    """
    options.setdefault("distinct_prompts", max(1, min(count, 100)))
    if "seed" not in options:
        # A second call on the same table must not draw the same prompt texts (they are unique):
        # the rows already there make the seed, which keeps a run reproducible.
        options["seed"] = session.scalar(select(func.count()).select_from(Generation)) or 0
    ids = bulk_seed_generations(session, count, status_distribution, **options)
    session.flush()
    by_id = {
        row.id: row
        for batch_start in range(0, len(ids), SEED_BATCH)
        for row in session.scalars(
            select(Generation).where(Generation.id.in_(ids[batch_start : batch_start + SEED_BATCH]))
        )
    }
    return [by_id[job_id] for job_id in ids]


# --- consistency between rows and files (independent of JobManager.check) -----------------------


def _outputs(outputs_dir: Path | str | None) -> Path:
    return Path(outputs_dir) if outputs_dir is not None else get_settings().output_dir


def _completed(session: Session) -> list[Generation]:
    return list(
        session.scalars(
            select(Generation)
            .where(Generation.status == GenerationStatus.COMPLETED)
            .order_by(Generation.created_at, Generation.id)
        )
    )


def get_orphaned_files(session: Session, outputs_dir: Path | str) -> list[Path]:
    """WAV files under ``outputs_dir`` that no row's ``file_path`` names, sorted.

    Temp files of a write in progress (``.*.tmp``) are not WAV files and are not listed.
    """
    root = Path(outputs_dir)
    referenced = {
        Path(path)
        for path in session.scalars(
            select(Generation.file_path).where(Generation.file_path.isnot(None))
        )
    }
    return [path for path in wav_files(root) if path.relative_to(root) not in referenced]


def get_orphaned_records(session: Session, outputs_dir: Path | str) -> list[Generation]:
    """Completed rows whose file is missing from ``outputs_dir`` (or that name no file)."""
    root = Path(outputs_dir)
    return [
        row
        for row in _completed(session)
        if row.file_path is None or not (root / row.file_path).is_file()
    ]


def verify_database_consistency(
    session: Session, outputs_dir: Path | str | None = None
) -> dict[str, Any]:
    """Check every row against the rules of its status and every file against its row.

    Parameters
    ----------
    session
        An open session.
    outputs_dir
        Root of the WAV files; the settings' ``output_dir`` by default.

    Returns
    -------
    dict
        ``total`` rows, ``by_status`` counts, ``orphaned_files`` (paths), ``orphaned_records``
        (ids of completed rows without their file), ``mismatched_files`` (id -> what differs:
        size, sha256, sample rate, channels, duration), ``invalid_rows`` (id -> the broken rule)
        and ``consistent``, true when all of those are empty.
    """
    root = _outputs(outputs_dir)
    rows = list(session.scalars(select(Generation)))
    invalid: dict[str, str] = {}
    for row in rows:
        problem = _row_problem(row)
        if problem:
            invalid[row.id] = problem
    mismatched: dict[str, list[str]] = {}
    orphaned_records = [row.id for row in get_orphaned_records(session, root)]
    for row in _completed(session):
        if row.id in orphaned_records or row.file_path is None:
            continue
        differences = _file_differences(row, root / row.file_path)
        if differences:
            mismatched[row.id] = differences
    orphaned_files = get_orphaned_files(session, root)
    report: dict[str, Any] = {
        "total": len(rows),
        "by_status": dict(Counter(row.status.value for row in rows)),
        "orphaned_files": orphaned_files,
        "orphaned_records": orphaned_records,
        "mismatched_files": mismatched,
        "invalid_rows": invalid,
    }
    report["consistent"] = not (orphaned_files or orphaned_records or mismatched or invalid)
    return report


def _row_problem(row: Generation) -> str:
    """The first rule of its status that ``row`` breaks, or ``""``."""
    has_file = row.file_path is not None
    if row.status is GenerationStatus.COMPLETED:
        if not has_file or row.sha256 is None or row.file_size is None:
            return "completed without its file facts"
        if row.completed_at is None or row.started_at is None:
            return "completed without started_at/completed_at"
        if row.completed_at < row.started_at or row.started_at < row.created_at:
            return "timestamps out of order"
        return ""
    if has_file:
        return f"{row.status.value} but names a file"
    if row.status is GenerationStatus.PROCESSING and (
        row.worker_id is None or row.lease_expires_at is None
    ):
        return "processing without a worker and lease"
    if row.status is GenerationStatus.PENDING and row.worker_id is not None:
        return "pending but held by a worker"
    return ""


def _file_differences(row: Generation, path: Path) -> list[str]:
    info = soundfile.info(str(path))
    differences = []
    if row.file_size != path.stat().st_size:
        differences.append(f"file_size {row.file_size} != {path.stat().st_size}")
    if row.sha256 != hashlib.sha256(path.read_bytes()).hexdigest():
        differences.append("sha256")
    if row.sample_rate is not None and row.sample_rate != info.samplerate:
        differences.append(f"sample_rate {row.sample_rate} != {info.samplerate}")
    if row.channels is not None and row.channels != info.channels:
        differences.append(f"channels {row.channels} != {info.channels}")
    if row.actual_duration is not None and abs(row.actual_duration - info.duration) > 1e-3:
        differences.append(f"actual_duration {row.actual_duration} != {info.duration:.4f}")
    return differences


def create_generation_with_file(
    session: Session,
    prompt: str,
    file_path: Path | str,
    status: GenerationStatus = GenerationStatus.COMPLETED,
    *,
    outputs_dir: Path | str | None = None,
    model: str = "synth",
) -> Generation:
    """Record an existing WAV file under ``outputs_dir`` as a generation of ``prompt``.

    The row's file facts (size, SHA-256, rate, channels, duration) are read from the file, so
    it passes :func:`verify_database_consistency`. The caller commits.

    Raises
    ------
    ValueError
        ``prompt`` is empty, ``file_path`` is missing or not under ``outputs_dir``, or
        ``status`` is one that cannot name a file (only completed rows do).
    """
    if not prompt.strip():
        raise ValueError("prompt: must not be empty")
    root = _outputs(outputs_dir).resolve()
    path = Path(file_path).resolve()
    if not path.is_file():
        raise ValueError(f"file_path: {path} does not exist")
    if not path.is_relative_to(root):
        raise ValueError(f"file_path: {path} is not under the outputs directory {root}")
    status = GenerationStatus(status)
    if status is not GenerationStatus.COMPLETED:
        raise ValueError(f"status: only completed generations have a file, not {status.value}")
    digest = prompt_digest(prompt)
    prompt_row = session.scalar(select(Prompt).where(Prompt.text_sha256 == digest))
    now = datetime.now(UTC)
    if prompt_row is None:
        prompt_row = Prompt(text=prompt, text_sha256=digest, first_used_at=now, last_used_at=now)
        session.add(prompt_row)
    prompt_row.use_count = (prompt_row.use_count or 0) + 1
    prompt_row.last_used_at = now
    info = soundfile.info(str(path))
    row = Generation(
        id=str(uuid.uuid4()),
        prompt=prompt_row,
        model=model,
        device="cpu",
        duration=float(info.duration),
        seed=None,
        temperature=1.0,
        top_k=250,
        top_p=0.0,
        guidance_scale=3.0,
        status=status,
        attempts=1,
        progress=1.0,
        created_at=now,
        started_at=now,
        completed_at=now,
        generation_seconds=0.0,
        file_path=path.relative_to(root).as_posix(),
        file_size=path.stat().st_size,
        sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        sample_rate=info.samplerate,
        channels=info.channels,
        actual_duration=float(info.duration),
    )
    session.add(row)
    session.flush()
    return row


def cleanup_test_files(
    generations: Iterable[Generation], outputs_dir: Path | str | None = None
) -> int:
    """Delete the files of ``generations`` (rows without a file are skipped); return how many
    files were deleted. A file already gone does not count."""
    root = _outputs(outputs_dir)
    deleted = 0
    for row in generations:
        if row.file_path is None:
            continue
        try:
            (root / row.file_path).unlink()
        except FileNotFoundError:
            continue
        deleted += 1
    return deleted


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
