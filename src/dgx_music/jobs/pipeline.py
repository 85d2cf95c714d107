"""The one end-to-end workflow: generate -> export to a temp file -> metadata -> rename -> commit.

Every caller (the CLI's ``generate``, the workers, the benchmarks) goes through
:func:`produce_track`, so a file on disk is always complete, normalised and described by metadata
taken from exactly the samples it holds. :func:`run_job` wraps it for a queued job (lease,
progress, completion or failure in the database) and :func:`generate_and_record` for the CLI's
synchronous ``generate``, which records a completed generation.

Consistency rules the database-facing functions keep:

- a file reaches its final path only after a last lease check, and the row is completed right
  after, in one transaction;
- on any failure before the rename the temp file is removed and the job is failed with a message
  a person can act on;
- when the database fails after the rename, the file is kept for a queued job (its row is still
  ``processing``; the retry overwrites it with the same audio) and removed for the CLI unless the
  row can be seen to exist.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dgx_music.audio.calibration import stated
from dgx_music.audio.export import (
    ExportResult,
    LoudnessNormalizer,
    WrittenFile,
    commit_temp,
    describe_os_error,
    encode_wav,
    export_result,
    write_temp,
)
from dgx_music.audio.metadata import AudioMetadata, analyze
from dgx_music.config import Settings, get_settings
from dgx_music.errors import (
    DatabaseUnavailableError,
    DgxMusicError,
    ExportError,
    LeaseLostError,
    NotFoundError,
    StorageError,
)
from dgx_music.generation.continuation import AudioPrompt
from dgx_music.generation.engine import MusicEngine, get_engine
from dgx_music.generation.request import GenerationRequest, GenerationResult, ProgressCallback
from dgx_music.jobs.lease import JobAborted, JobLease
from dgx_music.jobs.queue import JobManager
from dgx_music.jobs.records import Job, JobOutput
from dgx_music.jobs.sources import load_source
from dgx_music.storage import files
from dgx_music.storage.database import get_database
from dgx_music.storage.files import relative_output_path
from dgx_music.storage.models import utcnow

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Track:
    """A finished file with what made it and what it holds."""

    request: GenerationRequest
    generation: GenerationResult
    export: ExportResult
    metadata: AudioMetadata
    #: Wall time of the whole workflow, seconds.
    total_seconds: float

    @property
    def path(self) -> Path:
        return self.export.path

    def summary(self) -> dict[str, Any]:
        """The facts a person wants to see after a generation, in display order."""
        meta = self.metadata
        tempo, key = stated(meta.tempo_bpm, meta.key, meta.flags)
        return {
            "model": self.generation.model,
            "device": self.generation.device,
            "seed": self.generation.seed,
            "duration (s)": meta.duration_s,
            "tempo (BPM)": tempo,
            "key": key,
            "loudness (LUFS)": meta.integrated_lufs,
            "true peak (dBTP)": meta.true_peak_dbtp,
            "sample peak": meta.sample_peak,
            "flags": ", ".join(self.export.flags + meta.flags) or "-",
            "generation time (s)": self.generation.generation_seconds,
            "real-time factor": self.generation.realtime_factor,
            "size (bytes)": self.export.size_bytes,
        }


def produce_track(
    request: GenerationRequest,
    final_path: Path,
    *,
    engine: MusicEngine | None = None,
    normalizer: LoudnessNormalizer | None = None,
    progress: ProgressCallback | None = None,
    before_commit: Callable[[], None] | None = None,
    continuation: AudioPrompt | None = None,
) -> Track:
    """Generate ``request`` and leave a finished WAV at ``final_path``.

    The file appears at ``final_path`` only when everything before the rename succeeded; on any
    failure the temp file is removed and the exception propagates. ``before_commit`` runs just
    before the rename (a worker checks it still holds the job there); if it raises, nothing
    reaches ``final_path``. With ``continuation`` the file is that track and the new music after
    it, normalised as one track.
    """
    started = time.perf_counter()
    generation = (engine or get_engine()).generate(
        request, progress=progress, continuation=continuation
    )
    return finish_track(
        request,
        generation,
        final_path,
        normalizer=normalizer,
        before_commit=before_commit,
        started=started,
    )


def finish_track(
    request: GenerationRequest,
    generation: GenerationResult,
    final_path: Path,
    *,
    normalizer: LoudnessNormalizer | None = None,
    before_commit: Callable[[], None] | None = None,
    started: float | None = None,
) -> Track:
    """Export ``generation`` to ``final_path`` with its metadata: the part of
    :func:`produce_track` after the model (a batch generates first, then finishes each job).

    ``started`` is when the workflow began (:func:`time.perf_counter`); the generation's own
    time counts from there when it is not given.
    """
    if started is None:
        started = time.perf_counter() - generation.generation_seconds
    normalised = (normalizer or LoudnessNormalizer.from_settings()).process(
        generation.audio, generation.sample_rate
    )
    data = encode_wav(normalised.audio, normalised.sample_rate)
    temp = write_temp(data, final_path)
    try:
        metadata = analyze(normalised.audio, normalised.sample_rate)
        if before_commit is not None:
            before_commit()
        commit_temp(temp, final_path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    written = WrittenFile.of(final_path, data)
    return Track(
        request=request,
        generation=generation,
        export=export_result(normalised, written),
        metadata=metadata,
        total_seconds=time.perf_counter() - started,
    )


def job_output(track: Track, relative_path: Path) -> JobOutput:
    """The facts a completed row records about ``track``, stored at ``relative_path``."""
    export, meta, generation = track.export, track.metadata, track.generation
    details = meta.to_dict()
    details.update(
        flags=[*export.flags, *meta.flags],
        gain_db=export.gain_db,
        limiter_reduction_db=export.limiter_reduction_db,
        realtime_factor=generation.realtime_factor,
        reported=dict(generation.reported),
    )
    if generation.continued_from is not None:
        details["continued_from"] = dict(generation.continued_from)
    return JobOutput(
        file_path=relative_path.as_posix(),
        file_size=export.size_bytes,
        sha256=export.sha256,
        sample_rate=export.sample_rate,
        channels=export.channels,
        actual_duration=export.duration_s,
        device=generation.device,
        seed=generation.seed,
        generation_seconds=generation.generation_seconds,
        lufs=meta.integrated_lufs,
        true_peak=meta.true_peak_dbtp,
        tempo_bpm=meta.tempo_bpm,
        key=meta.key,
        metadata=details,
    )


def describe_failure(exc: BaseException) -> str:
    """The message a failed job records: the project's own message, or the cause of an OS or
    unexpected error with a pointer to the worker log."""
    if isinstance(exc, DgxMusicError):
        return exc.message
    if isinstance(exc, OSError):
        # Name the path the OS refused, so the person reading the job can go and fix it.
        where = f" {exc.filename}" if exc.filename else ""
        return f"cannot prepare the output directory{where}: {describe_os_error(exc)}"
    return f"unexpected {type(exc).__name__}: {exc}; the worker log has the traceback"


def run_job(
    manager: JobManager,
    job: Job,
    *,
    worker_id: str,
    engine: MusicEngine | None = None,
    settings: Settings | None = None,
    progress: ProgressCallback | None = None,
    lease: JobLease | None = None,
) -> Job:
    """Run a claimed job to the end and return it as stored: completed, failed, or (when the
    worker stopped) pending again.

    Raises
    ------
    DatabaseUnavailableError
        The database went away. The temp file is gone; the row stays ``processing`` and is
        re-queued when its lease expires.
    """
    lease = lease or JobLease(manager, job, worker_id, forward=progress)
    (finished,) = run_jobs(manager, [lease], worker_id=worker_id, engine=engine, settings=settings)
    return finished


def run_jobs(
    manager: JobManager,
    leases: Sequence[JobLease],
    *,
    worker_id: str,
    engine: MusicEngine | None = None,
    settings: Settings | None = None,
) -> list[Job]:
    """Run claimed jobs of one model as one batch; return each as stored, in order.

    The model generates them together (:meth:`MusicEngine.generate_batch`), then each is
    exported, described and recorded on its own: one job's failure, lost lease or release
    touches no other. A job whose request is invalid fails before the batch starts.

    Raises
    ------
    DatabaseUnavailableError
        The database went away. Temp files are gone; rows not yet recorded stay ``processing``
        and are re-queued when their leases expire.
    """
    settings = settings or manager.settings
    engine = engine or get_engine()
    finished: dict[str, Job] = {}
    ready: list[tuple[JobLease, GenerationRequest, Path, Path, AudioPrompt | None]] = []
    for lease in leases:
        job = lease.job
        relative = relative_output_path(job.id, job.created_at)
        final = settings.output_dir / relative
        try:
            request = job.request()
            source = None
            if request.continue_from is not None:
                source = load_source(manager, settings.output_dir, request.continue_from)
            final.parent.mkdir(parents=True, exist_ok=True)
        except Exception as exc:
            lease.ended = True
            finished[job.id] = _settle(manager, job, worker_id, exc)
        else:
            ready.append((lease, request, final, relative, source))
    if ready:
        started = time.perf_counter()
        outcomes = engine.generate_batch(
            [request for _, request, *_ in ready],
            [lease.on_progress for lease, *_ in ready],
            [source for *_, source in ready],
        )
        for (lease, request, final, relative, _), outcome in zip(ready, outcomes, strict=True):
            finished[lease.job.id] = _finish_job(
                manager, lease, request, outcome, final, relative, worker_id, started
            )
    return [finished[lease.job.id] for lease in leases]


def _finish_job(
    manager: JobManager,
    lease: JobLease,
    request: GenerationRequest,
    outcome: GenerationResult | Exception,
    final: Path,
    relative: Path,
    worker_id: str,
    started: float,
) -> Job:
    """Export, describe and record one generated job of a batch (or settle its failure)."""
    job = lease.job
    try:
        if isinstance(outcome, Exception):
            raise outcome
        track = finish_track(request, outcome, final, before_commit=lease.confirm, started=started)
    except Exception as exc:
        lease.ended = True
        return _settle(manager, job, worker_id, exc)
    lease.ended = True
    log_extra = {"job_id": job.id}
    try:
        return manager.complete(job.id, worker_id, job_output(track, relative))
    except LeaseLostError as exc:
        # Another worker holds the job now and writes the same audio (same seed) to the same
        # path; removing the file here could remove theirs.
        logger.warning("job %s finished after its lease was lost: %s", job.id, exc, extra=log_extra)
        return manager.get(job.id)
    except DatabaseUnavailableError:
        # The commit may or may not have happened; keep the file. If it did not, the row is
        # still processing, and the retry overwrites the file or recovery removes it.
        raise
    except StorageError as exc:
        files.remove_output_file(final)
        return manager.fail(job.id, worker_id, f"could not record the result: {exc}")


def _settle(manager: JobManager, job: Job, worker_id: str, exc: Exception) -> Job:
    """Record how a job ended before it was completed: abandoned (lease lost), released
    (worker stopping) or failed with a message a person can act on."""
    log_extra = {"job_id": job.id}
    if isinstance(exc, LeaseLostError):
        logger.warning("job %s abandoned: %s", job.id, exc, extra=log_extra)
        return manager.get(job.id)
    if isinstance(exc, JobAborted):
        return manager.release(job.id, worker_id, f"worker {worker_id} stopped; re-queued")
    if isinstance(exc, DatabaseUnavailableError):
        raise exc
    if not isinstance(exc, DgxMusicError | OSError):
        logger.error(
            "job %s: unexpected error",
            job.id,
            exc_info=(type(exc), exc, exc.__traceback__),
            extra=log_extra,
        )
    return manager.fail(job.id, worker_id, describe_failure(exc))


@dataclass(frozen=True)
class RecordedTrack:
    """A track written into the output layout and recorded as a completed generation."""

    track: Track
    job: Job
    #: Where the file is: in the output layout, or the ``out`` copy when one was asked for.
    path: Path

    def summary(self) -> dict[str, Any]:
        return {"id": self.job.id, **self.track.summary()}


def cli_worker_id() -> str:
    """The worker id the CLI's synchronous ``generate`` records."""
    return f"cli-{socket.gethostname()}-{os.getpid()}"


def generate_and_record(
    request: GenerationRequest,
    *,
    out: Path | None = None,
    progress: ProgressCallback | None = None,
    manager: JobManager | None = None,
    engine: MusicEngine | None = None,
    settings: Settings | None = None,
    continuation: AudioPrompt | None = None,
) -> RecordedTrack:
    """Generate ``request`` now, into the output layout, and record it as completed.

    The database is opened first, so an unreachable one fails before any work. With ``out``,
    a copy of the file is also written there (atomically). ``continuation`` is a track to
    continue (the CLI's ``--continue FILE``); a request's ``continue_from`` id is read here.

    Raises
    ------
    DatabaseUnavailableError
        Before generating, or after: then the file is removed unless its row can be seen.
    ExportError
        The file or its copy could not be written.
    """
    settings = settings or get_settings()
    if out is not None and not Path(out).parent.is_dir():
        raise ExportError(out, "directory missing")
    manager = manager or JobManager(get_database(settings), settings=settings)
    job_id = str(uuid.uuid4())
    created_at = utcnow()
    relative = relative_output_path(job_id, created_at)
    final = settings.output_dir / relative
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(final, describe_os_error(exc)) from exc
    if continuation is None and request.continue_from is not None:
        continuation = load_source(manager, settings.output_dir, request.continue_from)
    track = produce_track(
        request, final, engine=engine, progress=progress, continuation=continuation
    )
    try:
        job = manager.record_completed(
            job_id,
            request,
            job_output(track, relative),
            created_at=created_at,
            started_at=created_at,
            worker_id=cli_worker_id(),
        )
    except DgxMusicError:
        if not _row_exists(manager, job_id):
            files.remove_output_file(final)
        raise
    path = final
    if out is not None:
        path = Path(out)
        commit_temp(write_temp(final.read_bytes(), path), path)
    return RecordedTrack(track=track, job=job, path=path)


def _row_exists(manager: JobManager, job_id: str) -> bool:
    try:
        manager.get(job_id)
    except NotFoundError:
        return False
    except DgxMusicError:
        # Cannot tell; most failures to record happen before the commit, so the file goes.
        return False
    return True
