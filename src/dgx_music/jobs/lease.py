"""A worker's hold on its jobs: the lease of each (:class:`JobLease`) and the heartbeat thread
that renews them all (:func:`heartbeat`).

A claimed job's lease runs out unless renewed: the heartbeat renews every lease a worker holds
every ``Settings.heartbeat_seconds``, and each progress step renews too, at most every
:data:`PROGRESS_INTERVAL`, with the progress. A lost lease (another worker took the job after
it expired) is remembered and raised at the next progress step, which ends the generation.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from dgx_music.errors import DgxMusicError, LeaseLostError, NotFoundError
from dgx_music.generation.request import ProgressCallback
from dgx_music.jobs.queue import JobManager
from dgx_music.jobs.records import Job

logger = logging.getLogger(__name__)

#: Least time between two progress writes to the database, seconds.
PROGRESS_INTERVAL = 1.0
#: Share of the progress bar the model's steps fill; export and analysis take the rest.
GENERATION_SHARE = 0.9


class JobAborted(Exception):
    """The worker was told to stop while this job was running."""


class JobLease:
    """A worker's hold on one job: renews the lease, writes throttled progress, notices loss.

    :meth:`on_progress` is the engine's progress callback; it raises :class:`LeaseLostError`
    when the lease was lost and :class:`JobAborted` when ``stop`` is set, which ends the
    generation early. :meth:`renew` is called by the worker's heartbeat thread.

    Parameters
    ----------
    manager, job, worker_id
        The queue, the claimed job and who claimed it.
    stop
        Set when the worker must give the job back instead of finishing it.
    forward
        Also told about every progress step (a progress bar).
    """

    def __init__(
        self,
        manager: JobManager,
        job: Job,
        worker_id: str,
        *,
        stop: threading.Event | None = None,
        forward: ProgressCallback | None = None,
    ) -> None:
        self.manager = manager
        self.job = job
        self.worker_id = worker_id
        self.stop = stop
        self.forward = forward
        self.lost: LeaseLostError | None = None
        #: Set once the job is being recorded as ended: the heartbeat leaves it alone then.
        self.ended = False
        self._last_write = time.monotonic()
        self._lock = threading.Lock()

    def renew(self, progress: float | None = None) -> None:
        """Extend the lease; remember (not raise) a lost lease, log an unreachable database."""
        try:
            self.manager.heartbeat(self.job.id, self.worker_id, progress)
        except LeaseLostError as exc:
            self.lost = exc
            logger.warning(
                "job %s: lease lost: %s", self.job.id, exc, extra={"job_id": self.job.id}
            )
        except NotFoundError as exc:
            self.lost = LeaseLostError(f"job {self.job.id} is gone: {exc}")
        except DgxMusicError as exc:
            # The database may come back before the lease runs out; confirm() decides.
            logger.error(
                "job %s: cannot renew the lease: %s",
                self.job.id,
                exc,
                extra={"action": "heartbeat", "job_id": self.job.id},
            )

    def on_progress(self, done: int, total: int) -> None:
        if self.forward is not None:
            self.forward(done, total)
        if self.lost is not None:
            raise self.lost
        if self.stop is not None and self.stop.is_set():
            raise JobAborted(f"worker {self.worker_id} is stopping")
        fraction = GENERATION_SHARE * done / total if total > 0 else 0.0
        now = time.monotonic()
        with self._lock:
            due = now - self._last_write >= PROGRESS_INTERVAL
            if due:
                self._last_write = now
        if due:
            self.renew(fraction)

    def confirm(self) -> None:
        """Renew the lease or raise: the last check before the file is renamed into place."""
        if self.lost is not None:
            raise self.lost
        self.manager.heartbeat(self.job.id, self.worker_id, GENERATION_SHARE)


@contextmanager
def heartbeat(leases: Sequence[JobLease], interval: float, name: str) -> Iterator[None]:
    """Renew every lease not yet ended, every ``interval`` seconds, from a thread of its own,
    while the body runs (one thread for a whole batch)."""
    done = threading.Event()

    def beat() -> None:
        while not done.wait(interval):
            for lease in leases:
                if not lease.ended:
                    lease.renew()

    thread = threading.Thread(target=beat, name=name, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
