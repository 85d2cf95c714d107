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

import logging
import secrets
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from sqlalchemy import (
    ColumnElement,
    Connection,
    case,
    select,
    text,
    update,
)
from sqlalchemy.orm import Session

from dgx_music.config import Settings, get_settings
from dgx_music.errors import JobStateError, LeaseLostError, NotFoundError
from dgx_music.jobs import wakeup
from dgx_music.jobs.maintenance import Maintenance
from dgx_music.jobs.records import (
    Job,
    JobOutput,
    request_columns,
)
from dgx_music.jobs.statements import (
    COUNTS_BY_STATUS,
    INSERT_JOB,
    JOB_BY_ID,
    JOBS_NEWEST,
    JOBS_NEWEST_IN_STATUS,
    TOTAL,
    TOTAL_IN_STATUS,
    prompt_upsert,
)
from dgx_music.jobs.transitions import check_transition, lease_expired
from dgx_music.storage import files
from dgx_music.storage.database import Database
from dgx_music.storage.models import (
    Generation,
    GenerationStatus,
    Prompt,
    prompt_digest,
    utcnow,
)

if TYPE_CHECKING:
    from dgx_music.generation.request import GenerationRequest

logger = logging.getLogger(__name__)


class JobManager(Maintenance):
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
            status=GenerationStatus.PENDING,
            created_at=now,
            **{**request.to_dict(), "seed": seed},
        )
        # Two Core statements and no ORM unit of work: the job is known before it is written.
        with self.database.transaction() as connection:
            prompt_id = self._use_prompt(connection, request.prompt, now)
            connection.execute(
                INSERT_JOB,
                {
                    **request_columns(request),
                    "id": job.id,
                    "prompt_id": prompt_id,
                    "status": job.status,
                    "seed": seed,
                    "attempts": job.attempts,
                    "progress": job.progress,
                    "created_at": now,
                },
            )
        logger.info("job %s submitted", job.id, extra={"action": "submit", "job_id": job.id})
        wakeup.job_queued(self.database)
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
                attempts=1,
                worker_id=worker_id,
                progress=1.0,
                created_at=created_at,
                started_at=started_at,
                completed_at=now,
                # The seed the generation used (the output's) over the request's, maybe None.
                **{**request_columns(request), **output.column_values()},
            )
            session.add(row)
            session.flush()
            job = Job.from_row(row)
        logger.info("job %s recorded", job.id, extra={"action": "record", "job_id": job.id})
        return job

    def _use_prompt(self, connection: Connection | Session, text: str, now: datetime) -> int:
        backend = self.database.backend
        statement = prompt_upsert(backend)
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
                outcome = lease_expired(
                    attempts=row.attempts,
                    max_attempts=self.settings.max_attempts,
                    worker_id=row.worker_id,
                    expired_at=row.lease_expires_at,
                )
                row.status = outcome.status
                row.error = outcome.error
                if outcome.gave_up:
                    row.completed_at = now
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
