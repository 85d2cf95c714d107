"""The job queue: submit, claim with a lease, heartbeat, complete, fail, cancel, recover.

:class:`JobManager` is the only code that reads or writes the ``generations`` table. A job moves
``pending -> processing -> completed | failed``; a pending job may be ``cancelled``; a processing
job whose lease expires goes back to ``pending`` until it has been claimed
``Settings.max_attempts`` times, then fails with the reason. Only the worker holding the lease
may heartbeat, complete, fail or release a job: any other call raises
:class:`~dgx_music.errors.LeaseLostError`, and any other illegal move
:class:`~dgx_music.errors.JobStateError`.

Claiming is atomic on both backends: PostgreSQL picks the oldest pending row with
``FOR UPDATE SKIP LOCKED`` so concurrent workers never wait on each other, and SQLite runs the
claim in a ``BEGIN IMMEDIATE`` transaction, which serialises writers.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import secrets
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from sqlalchemy import (
    ColumnElement,
    Connection,
    Insert,
    Integer,
    Row,
    String,
    bindparam,
    case,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.orm import Session

from dgx_music.config import Settings, get_settings
from dgx_music.errors import JobStateError, LeaseLostError, NotFoundError
from dgx_music.storage import files
from dgx_music.storage.database import Database
from dgx_music.storage.files import ConsistencyReport, FileRecord
from dgx_music.storage.models import (
    FINISHED_STATUSES,
    TRANSITIONS,
    Generation,
    GenerationCount,
    GenerationStatus,
    Prompt,
    UTCDateTime,
    prompt_digest,
    utcnow,
)

if TYPE_CHECKING:
    # Imported where used: the request module brings numpy, which listing the history (the
    # CLI's ``jobs``) does not need.
    from dgx_music.generation.request import GenerationRequest

logger = logging.getLogger(__name__)

#: The queue's statuses are the generation statuses.
JobStatus = GenerationStatus

#: How long an orphan or stale temp file must have been left alone before ``db cleanup``
#: deletes it, seconds: a younger one may belong to a write that is about to be recorded.
CLEANUP_GRACE_SECONDS = 300.0
#: Rows read per round trip when walking the whole table.
SCAN_BATCH = 5_000


#: The columns of a job snapshot, in :class:`Job` field order, and its prompt's text. Reads
#: select these with Core and build :class:`Job` straight from the rows: the ORM's identity map
#: and relationship loading cost more than the query for a one-row lookup.
JOB_COLUMNS = (
    Generation.id,
    Prompt.text.label("prompt"),
    Generation.status,
    Generation.model,
    Generation.device,
    Generation.duration,
    Generation.seed,
    Generation.temperature,
    Generation.top_k,
    Generation.top_p,
    Generation.guidance_scale,
    Generation.continue_from,
    Generation.attempts,
    Generation.worker_id,
    Generation.lease_expires_at,
    Generation.progress,
    Generation.created_at,
    Generation.started_at,
    Generation.completed_at,
    Generation.generation_seconds,
    Generation.file_path,
    Generation.file_size,
    Generation.sha256,
    Generation.sample_rate,
    Generation.channels,
    Generation.actual_duration,
    Generation.lufs,
    Generation.true_peak,
    Generation.tempo_bpm,
    Generation.key,
    Generation.audio_metadata.label("metadata"),
    Generation.error,
)
# Statements built once: SQLAlchemy then compiles each once and, given the same object again,
# skips re-deriving its cache key and result map (half the cost of a one-row read).
#: Every job snapshot read: one statement with the prompt joined in.
JOBS_WITH_PROMPT = select(*JOB_COLUMNS).join_from(
    Generation, Prompt, Generation.prompt_id == Prompt.id
)
#: One job by id.
JOB_BY_ID = JOBS_WITH_PROMPT.where(Generation.id == bindparam("job_id"))
_NEWEST_FIRST = (Generation.created_at.desc(), Generation.id.desc())
#: A page of the history, newest first.
JOBS_NEWEST = (
    JOBS_WITH_PROMPT.order_by(*_NEWEST_FIRST)
    .limit(bindparam("limit", type_=Integer))
    .offset(bindparam("offset", type_=Integer))
)
#: A page of one status, newest first (the status + created index).
JOBS_NEWEST_IN_STATUS = (
    JOBS_WITH_PROMPT.where(Generation.status == bindparam("status"))
    .order_by(*_NEWEST_FIRST)
    .limit(bindparam("limit", type_=Integer))
    .offset(bindparam("offset", type_=Integer))
)
# generation_counts is kept by triggers in the same transaction as every change to generations
# (migration 0002): summing its few rows replaces count(*) over the whole table.
#: How many generations there are.
TOTAL = select(func.coalesce(func.sum(GenerationCount.total), 0))
#: How many generations are in one status.
TOTAL_IN_STATUS = TOTAL.where(GenerationCount.status == bindparam("status", type_=String))
#: Generations per status, from the maintained counts.
COUNTS_BY_STATUS = select(GenerationCount.status, func.sum(GenerationCount.total)).group_by(
    GenerationCount.status
)
#: A new pending job (the values come with each execution).
INSERT_JOB = insert(Generation)


def _prompt_upsert(backend: str) -> Insert:
    """Insert a prompt or count one more use of it, returning its id: one statement,
    race-free on both backends."""
    if backend == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    return (
        dialect_insert(Prompt)
        .values(
            text=bindparam("text"),
            text_sha256=bindparam("text_sha256"),
            use_count=1,
            first_used_at=bindparam("first_used_at", type_=UTCDateTime()),
            last_used_at=bindparam("last_used_at", type_=UTCDateTime()),
        )
        .on_conflict_do_update(
            index_elements=[Prompt.text_sha256],
            set_={
                "use_count": Prompt.use_count + 1,
                "last_used_at": bindparam("used_again_at", type_=UTCDateTime()),
            },
        )
        .returning(Prompt.id)
    )


#: :func:`_prompt_upsert` per backend, built on first use.
_PROMPT_UPSERTS: dict[str, Insert] = {}


def check_transition(job_id: str, current: GenerationStatus, target: GenerationStatus) -> None:
    """Raise :class:`JobStateError` unless a job may move from ``current`` to ``target``."""
    if target not in TRANSITIONS[current]:
        allowed = ", ".join(sorted(TRANSITIONS[current])) or "nothing (it is final)"
        raise JobStateError(
            f"job {job_id} is {current}; it cannot become {target} (allowed: {allowed})"
        )


@dataclass(frozen=True, kw_only=True)
class Job:
    """A snapshot of one ``generations`` row. Times are UTC-aware; ``file_path`` is relative to
    the output directory; ``metadata`` is what the analysis measured."""

    id: str
    prompt: str
    status: JobStatus
    model: str
    device: str | None
    #: Requested length, seconds.
    duration: float
    seed: int | None
    temperature: float
    top_k: int
    top_p: float
    guidance_scale: float
    #: The generation this one continues, if any.
    continue_from: str | None = None
    attempts: int
    worker_id: str | None
    lease_expires_at: datetime | None
    #: Fraction done, 0..1.
    progress: float
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    #: Model time, seconds.
    generation_seconds: float | None
    file_path: str | None
    #: Bytes.
    file_size: int | None
    sha256: str | None
    #: Hz.
    sample_rate: int | None
    channels: int | None
    #: Length of the written file, seconds.
    actual_duration: float | None
    #: Integrated loudness, LUFS.
    lufs: float | None
    #: dBTP.
    true_peak: float | None
    #: BPM.
    tempo_bpm: float | None
    key: str | None
    metadata: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @classmethod
    def from_row(cls, row: Generation, prompt: str | None = None) -> Job:
        """The snapshot of ``row``; ``prompt`` saves loading the prompt when it is known."""
        return cls(
            id=row.id,
            prompt=prompt if prompt is not None else row.prompt.text,
            status=GenerationStatus(row.status),
            model=row.model,
            device=row.device,
            duration=row.duration,
            seed=row.seed,
            temperature=row.temperature,
            top_k=row.top_k,
            top_p=row.top_p,
            guidance_scale=row.guidance_scale,
            continue_from=row.continue_from,
            attempts=row.attempts,
            worker_id=row.worker_id,
            lease_expires_at=row.lease_expires_at,
            progress=row.progress,
            created_at=row.created_at,
            started_at=row.started_at,
            completed_at=row.completed_at,
            generation_seconds=row.generation_seconds,
            file_path=row.file_path,
            file_size=row.file_size,
            sha256=row.sha256,
            sample_rate=row.sample_rate,
            channels=row.channels,
            actual_duration=row.actual_duration,
            lufs=row.lufs,
            true_peak=row.true_peak,
            tempo_bpm=row.tempo_bpm,
            key=row.key,
            metadata=dict(row.audio_metadata or {}),
            error=row.error,
        )

    @classmethod
    def from_columns(cls, row: Row[Any]) -> Job:
        """The snapshot of a row selected with :data:`JOB_COLUMNS` (labelled as the fields)."""
        values = dict(row._mapping)
        values["status"] = GenerationStatus(values["status"])
        values["metadata"] = dict(values["metadata"] or {})
        return cls(**values)

    def evolve(self, **changes: Any) -> Job:
        """A copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED_STATUSES

    def request(self) -> GenerationRequest:
        """The generation request this job was submitted with, validated again.

        Raises
        ------
        ValidationError
            The settings changed since submission and no longer allow it (a shorter
            ``max_duration``, for example).
        """
        from dgx_music.generation.request import GenerationRequest

        return GenerationRequest(
            prompt=self.prompt,
            duration=self.duration,
            model=self.model,
            seed=self.seed,
            temperature=self.temperature,
            top_k=self.top_k,
            top_p=self.top_p,
            guidance_scale=self.guidance_scale,
            continue_from=self.continue_from,
        )


def _finite_or_none(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def _json_safe(value: Any) -> Any:
    # JSON has no NaN or infinity (PostgreSQL rejects them): undefined values become null.
    if isinstance(value, float):
        return _finite_or_none(value)
    if isinstance(value, dict):
        return {str(key): _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    return value


@dataclass(frozen=True, kw_only=True)
class JobOutput:
    """What a finished generation produced: the facts a completed row records."""

    #: Relative to the output directory.
    file_path: str
    #: Bytes.
    file_size: int
    sha256: str
    #: Hz.
    sample_rate: int
    channels: int
    #: Length of the written file, seconds.
    actual_duration: float
    device: str
    seed: int
    #: Model time, seconds.
    generation_seconds: float
    #: Integrated loudness, LUFS; None for silence or clips shorter than 400 ms.
    lufs: float | None = None
    #: dBTP.
    true_peak: float | None = None
    #: BPM.
    tempo_bpm: float | None = None
    key: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def column_values(self) -> dict[str, Any]:
        """The ``generations`` attributes this output sets, JSON- and SQL-safe."""
        return {
            "file_path": self.file_path,
            "file_size": self.file_size,
            "sha256": self.sha256,
            "sample_rate": self.sample_rate,
            "channels": self.channels,
            "actual_duration": self.actual_duration,
            "device": self.device,
            "seed": self.seed,
            "generation_seconds": self.generation_seconds,
            "lufs": _finite_or_none(self.lufs),
            "true_peak": _finite_or_none(self.true_peak),
            "tempo_bpm": _finite_or_none(self.tempo_bpm),
            "key": self.key,
            "audio_metadata": _json_safe(self.metadata),
        }


@dataclass(frozen=True)
class CleanupResult:
    """What ``db cleanup`` did (or, with ``dry_run``, would do)."""

    dry_run: bool
    requeued_or_failed: int
    removed_files: list[str]
    marked_missing: list[str]
    #: Problems left for a person: files that differ from their row, young orphans.
    left_alone: list[str]


class JobManager:
    """The queue and the generation history, over one :class:`Database`.

    Parameters
    ----------
    database
        Where the ``generations`` table lives.
    settings
        Output directory, lease length and maximum attempts; the process settings by default.
    clock
        Returns the current UTC-aware time; tests pass a fake one to expire leases.
    """

    def __init__(
        self,
        database: Database,
        *,
        settings: Settings | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.database = database
        self.settings = settings or get_settings()
        self.clock = clock

    @property
    def output_dir(self) -> Path:
        return self.settings.output_dir

    # --- writing ------------------------------------------------------------------------

    def submit(self, request: GenerationRequest) -> Job:
        """Queue ``request`` as a pending job.

        A request without a seed gets one now, so a job that is retried after a worker died
        produces the same audio.
        """
        from dgx_music.generation.request import MAX_SEED

        now = self.clock()
        seed = request.seed if request.seed is not None else secrets.randbelow(MAX_SEED + 1)
        job = Job(
            id=str(uuid.uuid4()),
            prompt=request.prompt,
            status=GenerationStatus.PENDING,
            model=request.model,
            device=None,
            duration=request.duration,
            seed=seed,
            temperature=request.temperature,
            top_k=request.top_k,
            top_p=request.top_p,
            guidance_scale=request.guidance_scale,
            continue_from=request.continue_from,
            attempts=0,
            worker_id=None,
            lease_expires_at=None,
            progress=0.0,
            created_at=now,
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
        # Two Core statements and no ORM unit of work: the job is known before it is written.
        with self.database.transaction() as connection:
            prompt_id = self._use_prompt(connection, request.prompt, now)
            connection.execute(
                INSERT_JOB,
                {
                    "id": job.id,
                    "prompt_id": prompt_id,
                    "status": job.status,
                    "model": job.model,
                    "duration": job.duration,
                    "seed": seed,
                    "temperature": job.temperature,
                    "top_k": job.top_k,
                    "top_p": job.top_p,
                    "guidance_scale": job.guidance_scale,
                    "continue_from": job.continue_from,
                    "attempts": 0,
                    "progress": 0.0,
                    "created_at": now,
                },
            )
        logger.info("job %s submitted", job.id, extra={"action": "submit", "job_id": job.id})
        return job

    def record_completed(
        self,
        job_id: str,
        request: GenerationRequest,
        output: JobOutput,
        *,
        created_at: datetime,
        started_at: datetime,
        worker_id: str,
    ) -> Job:
        """Record a generation that already finished outside the queue (the CLI's ``generate``).

        The file must already be at ``output.file_path``; the row is written in one transaction.
        """
        now = self.clock()
        with self.database.session() as session:
            prompt_id = self._use_prompt(session, request.prompt, now)
            row = Generation(
                id=job_id,
                prompt_id=prompt_id,
                status=GenerationStatus.COMPLETED,
                model=request.model,
                duration=request.duration,
                temperature=request.temperature,
                top_k=request.top_k,
                top_p=request.top_p,
                guidance_scale=request.guidance_scale,
                continue_from=request.continue_from,
                attempts=1,
                worker_id=worker_id,
                progress=1.0,
                created_at=created_at,
                started_at=started_at,
                completed_at=now,
                **output.column_values(),
            )
            session.add(row)
            session.flush()
            job = Job.from_row(row)
        logger.info("job %s recorded", job.id, extra={"action": "record", "job_id": job.id})
        return job

    def _use_prompt(self, connection: Connection | Session, text: str, now: datetime) -> int:
        backend = self.database.backend
        statement = _PROMPT_UPSERTS.get(backend)
        if statement is None:
            statement = _PROMPT_UPSERTS.setdefault(backend, _prompt_upsert(backend))
        parameters = {
            "text": text,
            "text_sha256": prompt_digest(text),
            "first_used_at": now,
            "last_used_at": now,
            "used_again_at": now,
        }
        return connection.execute(statement, parameters).scalar_one()

    def claim(self, worker_id: str, *, lease_seconds: float | None = None) -> Job | None:
        """Take the oldest pending job for ``worker_id``; ``None`` when there is none.

        The job becomes ``processing`` with a lease of ``lease_seconds`` (the settings' by
        default) and one more attempt.
        """
        now = self.clock()
        lease = timedelta(seconds=lease_seconds or self.settings.lease_seconds)
        oldest = (
            select(Generation.id)
            .where(Generation.status == GenerationStatus.PENDING)
            .order_by(Generation.created_at, Generation.id)
            .limit(1)
        )
        if self.database.backend == "postgresql":
            oldest = oldest.with_for_update(skip_locked=True)
        values = self._claim_values(worker_id, now, lease)
        with self.database.session(write=True) as session:
            job = self._update_returning(session, Generation.id == oldest.scalar_subquery(), values)
        if job is None:
            return None
        logger.info(
            "job %s claimed by %s (attempt %d)",
            job.id,
            worker_id,
            job.attempts,
            extra={"action": "claim", "job_id": job.id},
        )
        return job

    def claim_more(
        self,
        worker_id: str,
        *,
        model: str,
        limit: int,
        lease_seconds: float | None = None,
        durations: tuple[float, float] | None = None,
    ) -> list[Job]:
        """Take up to ``limit`` more of the oldest pending jobs of ``model``, as :meth:`claim`
        takes one: the jobs a worker generates in one batch beside the one it claimed.
        ``durations`` = ``(low, high]`` keeps to jobs of that length, seconds."""
        if limit <= 0:
            return []
        now = self.clock()
        lease = timedelta(seconds=lease_seconds or self.settings.lease_seconds)
        condition = (Generation.status == GenerationStatus.PENDING) & (Generation.model == model)
        if durations is not None:
            low, high = durations
            condition &= (Generation.duration > low) & (Generation.duration <= high)
        oldest = (
            select(Generation.id)
            .where(condition)
            .order_by(Generation.created_at, Generation.id)
            .limit(limit)
        )
        if self.database.backend == "postgresql":
            oldest = oldest.with_for_update(skip_locked=True)
        with self.database.session(write=True) as session:
            jobs = self._update_returning_all(
                session, Generation.id.in_(oldest), self._claim_values(worker_id, now, lease)
            )
        for job in jobs:
            logger.info(
                "job %s claimed by %s into a batch (attempt %d)",
                job.id,
                worker_id,
                job.attempts,
                extra={"action": "claim", "job_id": job.id},
            )
        return sorted(jobs, key=lambda job: (job.created_at, job.id))

    @staticmethod
    def _claim_values(worker_id: str, now: datetime, lease: timedelta) -> dict[str, Any]:
        """What a claim writes: ``processing`` for ``worker_id``, a lease, one more attempt."""
        return {
            "status": GenerationStatus.PROCESSING,
            "worker_id": worker_id,
            "lease_expires_at": now + lease,
            "attempts": Generation.attempts + 1,
            # The clock is read before the claim's statement, and a job committed in between
            # can be claimed by it: never let a job start before it was created.
            "started_at": case((Generation.created_at > now, Generation.created_at), else_=now),
            "progress": 0.0,
        }

    def heartbeat(
        self,
        job_id: str,
        worker_id: str,
        progress: float | None = None,
        *,
        lease_seconds: float | None = None,
    ) -> None:
        """Extend the lease of ``worker_id`` on ``job_id`` and record ``progress`` (0..1).

        Raises
        ------
        LeaseLostError
            The job is no longer processing under this worker (its lease expired and it was
            re-queued, or it was finished by someone else).
        NotFoundError
            No such job.
        """
        now = self.clock()
        values: dict[str, Any] = {
            "lease_expires_at": now
            + timedelta(seconds=lease_seconds or self.settings.lease_seconds)
        }
        if progress is not None:
            values["progress"] = min(1.0, max(0.0, float(progress)))
        statement = (
            update(Generation)
            .where(
                Generation.id == job_id,
                Generation.status == GenerationStatus.PROCESSING,
                Generation.worker_id == worker_id,
            )
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        with self.database.session() as session:
            if self.database.backend == "postgresql":
                # A lost lease extension costs at most a retried job after a server crash:
                # not worth waiting for the WAL flush on every beat.
                session.execute(text("SET LOCAL synchronous_commit TO OFF"))
            updated = session.execute(statement).rowcount  # type: ignore[attr-defined]
            if updated == 0:
                self._raise_not_holder(session, job_id, worker_id)

    def complete(self, job_id: str, worker_id: str, output: JobOutput) -> Job:
        """Mark the job completed with the facts of its file, in one transaction.

        Raises
        ------
        LeaseLostError
            ``worker_id`` does not hold the job.
        """
        values = {
            **output.column_values(),
            "status": GenerationStatus.COMPLETED,
            "completed_at": self.clock(),
            "lease_expires_at": None,
            "progress": 1.0,
            "error": None,
        }
        job = self._update_held(job_id, worker_id, values)
        logger.info("job %s completed", job_id, extra={"action": "complete", "job_id": job_id})
        return job

    def fail(self, job_id: str, worker_id: str, message: str) -> Job:
        """Mark the job failed with ``message``, which should tell a person what to do.

        Raises
        ------
        LeaseLostError
            ``worker_id`` does not hold the job.
        """
        values = {
            "status": GenerationStatus.FAILED,
            "error": message,
            "completed_at": self.clock(),
            "lease_expires_at": None,
        }
        job = self._update_held(job_id, worker_id, values)
        logger.warning(
            "job %s failed: %s", job_id, message, extra={"action": "fail", "job_id": job_id}
        )
        return job

    def release(self, job_id: str, worker_id: str, reason: str) -> Job:
        """Give a job back to the queue without using up an attempt (a worker shutting down).

        Raises
        ------
        LeaseLostError
            ``worker_id`` does not hold the job.
        """
        with self.database.session(write=True) as session:
            row = self._locked(session, job_id)
            self._require_holder(row, worker_id)
            row.status = GenerationStatus.PENDING
            row.attempts = max(0, row.attempts - 1)
            row.worker_id = None
            row.lease_expires_at = None
            row.started_at = None
            row.progress = 0.0
            row.error = reason
            session.flush()
            job = Job.from_row(row)
        self._remove_partial_files(job)
        logger.info(
            "job %s released: %s", job_id, reason, extra={"action": "release", "job_id": job_id}
        )
        return job

    def cancel(self, job_id: str) -> Job:
        """Cancel a pending job.

        Raises
        ------
        JobStateError
            The job is not pending.
        NotFoundError
            No such job.
        """
        with self.database.session(write=True) as session:
            row = self._locked(session, job_id)
            check_transition(job_id, row.status, GenerationStatus.CANCELLED)
            row.status = GenerationStatus.CANCELLED
            row.completed_at = self.clock()
            row.error = "cancelled before a worker started it"
            session.flush()
            job = Job.from_row(row)
        self._remove_partial_files(job)
        logger.info("job %s cancelled", job_id, extra={"action": "cancel", "job_id": job_id})
        return job

    def delete(self, job_id: str) -> Job:
        """Remove a job: a pending one is cancelled (and kept), a finished one is deleted with
        its file. Returns the job as it was last stored.

        The row goes first and the file after the commit: a crash in between leaves an orphan
        file, which ``db check`` reports and ``db cleanup`` removes, never a row without its file.

        Raises
        ------
        JobStateError
            The job is processing: cancel is not possible while a worker holds it.
        NotFoundError
            No such job.
        """
        with self.database.session(write=True) as session:
            row = self._locked(session, job_id)
            status = GenerationStatus(row.status)
            if status is GenerationStatus.PROCESSING:
                raise JobStateError(
                    f"job {job_id} is being processed by {row.worker_id}; wait for it to finish"
                )
            if status is not GenerationStatus.PENDING:
                job = Job.from_row(row)
                session.delete(row)
        if status is GenerationStatus.PENDING:
            return self.cancel(job_id)
        if job.file_path is not None:
            files.remove_output_file(self.output_dir / job.file_path)
        logger.info("job %s deleted", job_id, extra={"action": "delete", "job_id": job_id})
        return job

    def recover_expired(self) -> int:
        """Re-queue processing jobs whose lease expired, or fail those out of attempts.

        The dead worker's temp file (and any final file it renamed but never recorded) is
        removed while the rows are still locked, so no new claimer can be writing it yet.
        Returns the number of jobs recovered.
        """
        now = self.clock()
        expired = (
            select(Generation)
            .where(
                Generation.status == GenerationStatus.PROCESSING,
                Generation.lease_expires_at < now,
            )
            .order_by(Generation.created_at)
            .with_for_update(of=Generation, skip_locked=True)
        )
        recovered = []
        with self.database.session(write=True) as session:
            for row in session.execute(expired).scalars():
                lease_text = f"{row.lease_expires_at:%Y-%m-%d %H:%M:%S} UTC"
                if row.attempts >= self.settings.max_attempts:
                    row.status = GenerationStatus.FAILED
                    row.completed_at = now
                    row.error = (
                        f"gave up after {row.attempts} attempts: the lease of worker "
                        f"{row.worker_id} expired at {lease_text} (the worker died, hung or lost "
                        "the database); submit the job again, and check the workers' logs"
                    )
                else:
                    row.status = GenerationStatus.PENDING
                    row.error = (
                        f"attempt {row.attempts} of {self.settings.max_attempts} abandoned: the "
                        f"lease of worker {row.worker_id} expired at {lease_text}; re-queued"
                    )
                row.worker_id = None
                row.lease_expires_at = None
                row.progress = 0.0
                recovered.append(Job.from_row(row))
                self._remove_partial_files(recovered[-1])
        for job in recovered:
            logger.warning(
                "job %s recovered: %s",
                job.id,
                job.error,
                extra={"action": "recover", "job_id": job.id},
            )
        return len(recovered)

    def mark_file_missing(self, job_id: str) -> Job:
        """Fail a completed job whose file is gone, so no row points at a missing file."""
        with self.database.session(write=True) as session:
            row = self._locked(session, job_id)
            check_transition(job_id, row.status, GenerationStatus.FAILED)
            row.error = (
                f"the output file {row.file_path} disappeared after the job completed "
                "(found by db cleanup); submit the prompt again"
            )
            row.status = GenerationStatus.FAILED
            row.file_path = None
            session.flush()
            job = Job.from_row(row)
        logger.warning(
            "job %s: output file missing",
            job_id,
            extra={"action": "mark_missing", "job_id": job_id},
        )
        return job

    # --- reading ------------------------------------------------------------------------

    def get(self, job_id: str) -> Job:
        """The job ``job_id``.

        Raises
        ------
        NotFoundError
            No such job (or ``job_id`` is not a generation id at all).
        """
        with self.database.read() as connection:
            row = connection.execute(JOB_BY_ID, {"job_id": self._valid_id(job_id)}).one_or_none()
        if row is None:
            raise NotFoundError(f"no generation with id {job_id}")
        return Job.from_columns(row)

    def list(
        self, status: GenerationStatus | None = None, limit: int = 50, offset: int = 0
    ) -> tuple[list[Job], int]:
        """Jobs newest first, and how many match in all (exact, from the maintained counts)."""
        page = {"limit": limit, "offset": offset}
        with self.database.read() as connection:
            if status is None:
                rows = connection.execute(JOBS_NEWEST, page)
                jobs = [Job.from_columns(row) for row in rows]
                total = connection.execute(TOTAL).scalar_one()
            else:
                rows = connection.execute(JOBS_NEWEST_IN_STATUS, {**page, "status": status})
                jobs = [Job.from_columns(row) for row in rows]
                total = connection.execute(TOTAL_IN_STATUS, {"status": status.value}).scalar_one()
        return jobs, int(total)

    def counts_by_status(self) -> dict[GenerationStatus, int]:
        """How many jobs are in each status (every status present, zeros included)."""
        counts = dict.fromkeys(GenerationStatus, 0)
        with self.database.read() as connection:
            for status, number in connection.execute(COUNTS_BY_STATUS):
                counts[GenerationStatus(status)] = int(number)
        return counts

    def counted_by_rows(self) -> dict[GenerationStatus, int]:
        """``count(*)`` of the table by status, the slow way: what the maintained counts
        (:meth:`counts_by_status`) must always equal. For ``db check`` and tests."""
        query = select(Generation.status, func.count()).group_by(Generation.status)
        counts = dict.fromkeys(GenerationStatus, 0)
        with self.database.read() as connection:
            for status, number in connection.execute(query):
                counts[GenerationStatus(status)] = int(number)
        return counts

    def file_records(self) -> Iterator[FileRecord]:
        """What every row says about its file, for the consistency check."""
        columns = (
            Generation.id,
            Generation.status,
            Generation.file_path,
            Generation.file_size,
            Generation.sha256,
            Generation.worker_id,
            Generation.lease_expires_at,
        )
        after = ""
        while True:
            query = select(*columns).order_by(Generation.id).limit(SCAN_BATCH)
            if after:
                query = query.where(Generation.id > after)
            with self.database.session() as session:
                rows = session.execute(query).all()
            for row in rows:
                yield FileRecord(*row)
            if len(rows) < SCAN_BATCH:
                return
            after = rows[-1].id

    def recount(self) -> dict[GenerationStatus, int]:
        """Rebuild the maintained counts from the rows and return them.

        The triggers keep ``generation_counts`` exact; this repairs it after something went
        around them (triggers disabled for a bulk load, a restore of one table). Writers wait
        for the few milliseconds it takes, so nothing changes between counting and writing.
        """
        with self.database.transaction(write=True) as connection:
            if self.database.backend == "postgresql":
                connection.execute(text("LOCK TABLE generations IN SHARE ROW EXCLUSIVE MODE"))
            rows = connection.execute(
                select(Generation.status, func.count()).group_by(Generation.status)
            )
            counts = dict.fromkeys(GenerationStatus, 0)
            for status, number in rows:
                counts[GenerationStatus(status)] = int(number)
            connection.execute(update(GenerationCount).values(total=0))
            for status, number in counts.items():
                connection.execute(
                    update(GenerationCount)
                    .where(GenerationCount.status == status.value, GenerationCount.shard == 0)
                    .values(total=number)
                )
        logger.warning("generation counts rebuilt from the rows", extra={"action": "recount"})
        return counts

    # --- consistency --------------------------------------------------------------------

    def check(self, *, verify_hashes: bool = True) -> ConsistencyReport:
        """Compare the output directory with the table (see :func:`files.audit_outputs`)."""
        return files.audit_outputs(
            self.output_dir,
            self.file_records(),
            now=self.clock(),
            verify_hashes=verify_hashes,
        )

    def cleanup(
        self, *, dry_run: bool = False, grace_seconds: float = CLEANUP_GRACE_SECONDS
    ) -> CleanupResult:
        """Repair what can be repaired safely.

        Expired leases are recovered; orphan and stale temp files older than
        ``grace_seconds`` are deleted; completed rows whose file is gone are marked failed.
        Files that differ from their row are reported, never deleted: a completed row's file
        is never removed.
        """
        report = self.check()
        removed: list[str] = []
        marked: list[str] = []
        left: list[str] = []
        recovered = len(report.stuck_jobs)
        if not dry_run and report.stuck_jobs:
            recovered = self.recover_expired()
        for item in [*report.orphan_files, *report.stale_temp_files]:
            if item.age_seconds < grace_seconds:
                left.append(
                    f"{item.relative_path} is only {item.age_seconds:.0f} s old; "
                    "it may belong to a write in progress"
                )
                continue
            if dry_run or files.remove_output_file(self.output_dir / item.relative_path):
                removed.append(item.relative_path)
        for record in report.missing_files:
            if not dry_run:
                self.mark_file_missing(record.id)
            marked.append(record.id)
        left += [
            f"generation {item.record.id}: {item.field} differs from the database; "
            "inspect the file, then delete the job or restore the file"
            for item in report.mismatches
        ]
        return CleanupResult(
            dry_run=dry_run,
            requeued_or_failed=recovered,
            removed_files=removed,
            marked_missing=marked,
            left_alone=left,
        )

    # --- helpers ------------------------------------------------------------------------

    def _remove_partial_files(self, job: Job) -> None:
        final = files.output_path(self.output_dir, job.id, job.created_at)
        files.remove_temp_files(final)
        if job.status is not GenerationStatus.COMPLETED:
            files.remove_output_file(final)

    def _update_returning(
        self, session: Session, condition: ColumnElement[bool], values: dict[str, Any]
    ) -> Job | None:
        """One ``UPDATE ... RETURNING`` of the row matching ``condition``, with its prompt."""
        row = session.execute(self._update_statement(condition, values)).one_or_none()
        return None if row is None else Job.from_row(row[0], prompt=row[1])

    def _update_returning_all(
        self, session: Session, condition: ColumnElement[bool], values: dict[str, Any]
    ) -> list[Job]:
        """``UPDATE ... RETURNING`` of every row matching ``condition``, with their prompts."""
        rows = session.execute(self._update_statement(condition, values)).all()
        return [Job.from_row(row[0], prompt=row[1]) for row in rows]

    @staticmethod
    def _update_statement(condition: ColumnElement[bool], values: dict[str, Any]) -> Any:
        prompt_text = select(Prompt.text).where(Prompt.id == Generation.prompt_id).scalar_subquery()
        return (
            update(Generation)
            .where(condition)
            .values(**values)
            .returning(Generation, prompt_text)
            .execution_options(synchronize_session=False)
        )

    def _update_held(self, job_id: str, worker_id: str, values: dict[str, Any]) -> Job:
        """Update a job only while ``worker_id`` holds it; otherwise say why not."""
        held = (
            (Generation.id == self._valid_id(job_id))
            & (Generation.status == GenerationStatus.PROCESSING)
            & (Generation.worker_id == worker_id)
        )
        with self.database.session(write=True) as session:
            job = self._update_returning(session, held, values)
            if job is None:
                self._raise_not_holder(session, job_id, worker_id)
        return job

    @staticmethod
    def _valid_id(job_id: str) -> str:
        try:
            return str(uuid.UUID(str(job_id)))
        except ValueError:
            raise NotFoundError(f"no generation with id {job_id!r}: not a generation id") from None

    def _locked(self, session: Session, job_id: str) -> Generation:
        query = (
            select(Generation)
            .where(Generation.id == self._valid_id(job_id))
            .with_for_update(of=Generation)
        )
        row = session.execute(query).scalar_one_or_none()
        if row is None:
            raise NotFoundError(f"no generation with id {job_id}")
        return row

    @staticmethod
    def _require_holder(row: Generation, worker_id: str) -> None:
        if row.status is not GenerationStatus.PROCESSING or row.worker_id != worker_id:
            holder = f"held by {row.worker_id}" if row.worker_id else "held by no worker"
            raise LeaseLostError(
                f"worker {worker_id} no longer holds job {row.id}: it is {row.status}, {holder}"
            )

    def _raise_not_holder(self, session: Session, job_id: str, worker_id: str) -> NoReturn:
        """Raise why an update that needed ``worker_id``'s lease matched no row."""
        row = session.get(Generation, self._valid_id(job_id))
        if row is None:
            raise NotFoundError(f"no generation with id {job_id}")
        self._require_holder(row, worker_id)
        raise LeaseLostError(f"worker {worker_id} no longer holds job {job_id}")
