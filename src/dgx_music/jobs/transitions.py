"""How a job may move: the legal status changes, and what an expired lease makes of a job.

Pure rules, no database: :class:`~dgx_music.jobs.queue.JobManager` applies them to rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from dgx_music.errors import JobStateError
from dgx_music.storage.models import TRANSITIONS, GenerationStatus


def check_transition(job_id: str, current: GenerationStatus, target: GenerationStatus) -> None:
    """Raise :class:`JobStateError` unless a job may move from ``current`` to ``target``."""
    if target not in TRANSITIONS[current]:
        allowed = ", ".join(sorted(TRANSITIONS[current])) or "nothing (it is final)"
        raise JobStateError(
            f"job {job_id} is {current}; it cannot become {target} (allowed: {allowed})"
        )


@dataclass(frozen=True)
class ExpiryOutcome:
    """What becomes of a processing job whose worker stopped renewing its lease."""

    #: ``pending`` (claimed again later) or ``failed`` (out of attempts).
    status: GenerationStatus
    #: The message the row keeps, for the person who reads the job.
    error: str

    @property
    def gave_up(self) -> bool:
        return self.status is GenerationStatus.FAILED


def lease_expired(
    *, attempts: int, max_attempts: int, worker_id: str | None, expired_at: datetime
) -> ExpiryOutcome:
    """The outcome of a lease that ran out: re-queued while claims are left, failed after
    ``max_attempts`` claims.

    Parameters
    ----------
    attempts
        How many times the job has been claimed, the lost claim included.
    max_attempts
        ``Settings.max_attempts``.
    worker_id
        Who held the lease.
    expired_at
        When the lease ran out (UTC).
    """
    when = f"{expired_at:%Y-%m-%d %H:%M:%S} UTC"
    if attempts >= max_attempts:
        return ExpiryOutcome(
            GenerationStatus.FAILED,
            f"gave up after {attempts} attempts: the lease of worker {worker_id} expired at "
            f"{when} (the worker died, hung or lost the database); submit the job again, and "
            "check the workers' logs",
        )
    return ExpiryOutcome(
        GenerationStatus.PENDING,
        f"attempt {attempts} of {max_attempts} abandoned: the lease of worker {worker_id} "
        f"expired at {when}; re-queued",
    )
