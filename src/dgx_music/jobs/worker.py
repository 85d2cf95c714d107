"""Workers: claim a job, run it while a heartbeat thread keeps its lease, repeat.

:class:`Worker` is one claim loop; :func:`run_workers` runs several in threads of one process
(the model and its weights are shared) and turns SIGTERM/SIGINT into a graceful stop: no new
claims, the current jobs finish within :data:`STOP_GRACE_SECONDS`, and are released back to the
queue otherwise (or at once on a second signal). Many processes, on many machines, may run
workers against one PostgreSQL database.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

from dgx_music.config import Settings, get_settings
from dgx_music.errors import DatabaseUnavailableError, DgxMusicError, LeaseLostError
from dgx_music.generation.engine import MusicEngine, get_engine
from dgx_music.generation.windows import duration_band
from dgx_music.jobs import wakeup
from dgx_music.jobs.lease import JobLease, heartbeat
from dgx_music.jobs.pipeline import run_jobs
from dgx_music.jobs.queue import JobManager
from dgx_music.jobs.records import Job, JobStatus
from dgx_music.storage.database import get_database

logger = logging.getLogger(__name__)

#: Longest time between two sweeps that re-queue jobs whose lease expired, seconds.
RECOVERY_INTERVAL = 5.0
#: After a stop signal, how long running jobs may take to finish before they are released, s.
STOP_GRACE_SECONDS = 30.0
#: How often the supervising thread looks at its workers and at the stop deadline, seconds.
SUPERVISE_INTERVAL = 0.2


def default_worker_id(index: int = 0) -> str:
    """``<host>-<pid>-<index>``: unique per thread on a machine, readable in ``jobs`` output."""
    return f"{socket.gethostname()}-{os.getpid()}-{index}"


class Worker:
    """One claim loop.

    Parameters
    ----------
    manager
        The queue.
    worker_id
        Recorded on the jobs it claims; :func:`default_worker_id` by default.
    engine
        Shared model engine; the process engine by default.
    settings
        Lease, heartbeat and poll intervals; the manager's settings by default.
    stop
        When set, the worker claims nothing more and returns after the current job.
    abort
        When set, the current job is released back to the queue at the model's next step.
    exit_when_empty
        Return when no job is pending or processing (a batch run, the tests).
    max_jobs
        Return after this many jobs.
    on_finished
        Called with each job this worker completed or failed, as it ended (the API's metrics
        count them); an exception it raises is logged, never fails the job.
    """

    def __init__(
        self,
        manager: JobManager,
        *,
        worker_id: str | None = None,
        engine: MusicEngine | None = None,
        settings: Settings | None = None,
        stop: threading.Event | None = None,
        abort: threading.Event | None = None,
        exit_when_empty: bool = False,
        max_jobs: int | None = None,
        on_finished: Callable[[Job], None] | None = None,
    ) -> None:
        self.manager = manager
        self.worker_id = worker_id or default_worker_id()
        self.engine = engine
        self.settings = settings or manager.settings
        self.stop = stop or threading.Event()
        self.abort = abort or threading.Event()
        self.exit_when_empty = exit_when_empty
        self.max_jobs = max_jobs
        self.on_finished = on_finished
        #: Jobs this worker ran to an end (completed, failed or released).
        self.processed = 0
        #: Why the loop ended early, if it did.
        self.error: DgxMusicError | None = None
        self._last_recovery = -float("inf")

    def run(self) -> int:
        """Claim and run jobs until told to stop; return how many were run.

        A database failure ends the loop: it is logged, kept in :attr:`error`, and re-raised.
        """
        logger.info("worker %s started", self.worker_id, extra={"action": "worker_start"})
        try:
            while not self.stop.is_set():
                if self.max_jobs is not None and self.processed >= self.max_jobs:
                    break
                job = self.run_once()
                if job is None:
                    if self.exit_when_empty and self._queue_is_empty():
                        break
                    wakeup.wait_for_work(
                        self.manager.database, self.stop, self.settings.poll_seconds
                    )
        except DatabaseUnavailableError as exc:
            self.error = exc
            logger.error(
                "worker %s stops: %s", self.worker_id, exc, extra={"action": "worker_stop"}
            )
            raise
        logger.info(
            "worker %s stopped after %d jobs",
            self.worker_id,
            self.processed,
            extra={"action": "worker_stop"},
        )
        return self.processed

    def run_once(self) -> Job | None:
        """Recover expired leases when due, claim a job (and, for MusicGen, more queued jobs of
        its model, up to the engine's batch limit), run them; return the first claimed as it
        ended, ``None`` when idle."""
        self._recover_when_due()
        job = self.manager.claim(self.worker_id, lease_seconds=self.settings.lease_seconds)
        if job is None:
            return None
        engine = self.engine or get_engine()
        more = self._claim_batch_mates(engine, job)
        if not more:
            finished = self.run_claimed(job)
            self.processed += 1
            return finished
        batch = self.run_batch([job, *more])
        self.processed += len(batch)
        return batch[0]

    def _claim_batch_mates(self, engine: MusicEngine, job: Job) -> list[Job]:
        """More pending jobs of ``job``'s model and of as many windows (about as long), to
        generate beside it (:func:`~dgx_music.generation.windows.duration_band`)."""
        try:
            limit = engine.batch_limit(job.model, self.settings.batch_size)
        except DgxMusicError:
            return []  # an unknown model: the job fails alone in the pipeline
        return self.manager.claim_more(
            self.worker_id,
            model=job.model,
            limit=limit - 1,
            lease_seconds=self.settings.lease_seconds,
            durations=duration_band(job.duration, self.settings.context_seconds),
        )

    def run_claimed(self, job: Job) -> Job:
        """Run a job this worker claimed, renewing its lease from a heartbeat thread."""
        return self.run_batch([job])[0]

    def run_batch(self, jobs: list[Job]) -> list[Job]:
        """Run jobs this worker claimed as one batch; one heartbeat thread renews every lease."""
        leases = [JobLease(self.manager, job, self.worker_id, stop=self.abort) for job in jobs]
        with heartbeat(leases, self.settings.heartbeat_seconds, f"heartbeat-{self.worker_id}"):
            try:
                ended = run_jobs(
                    self.manager,
                    leases,
                    worker_id=self.worker_id,
                    engine=self.engine or get_engine(),
                    settings=self.settings,
                )
            except LeaseLostError as exc:
                # Lost between the pipeline and a fail() or release(): the new holder owns it.
                logger.warning("%s", exc, extra={"job_id": jobs[0].id})
                return [self.manager.get(job.id) for job in jobs]
        self._tell_finished(ended)
        return ended

    def _tell_finished(self, jobs: list[Job]) -> None:
        if self.on_finished is None:
            return
        for job in jobs:
            if job.status not in (JobStatus.COMPLETED, JobStatus.FAILED):
                continue  # released back to the queue: another worker will end it
            try:
                self.on_finished(job)
            except Exception:
                logger.exception("on_finished failed for job %s", job.id, extra={"job_id": job.id})

    def _recover_when_due(self) -> None:
        interval = min(RECOVERY_INTERVAL, self.settings.lease_seconds / 2)
        now = time.monotonic()
        if now - self._last_recovery >= interval:
            self._last_recovery = now
            self.manager.recover_expired()

    def _queue_is_empty(self) -> bool:
        counts = self.manager.counts_by_status()
        return counts[JobStatus.PENDING] == 0 and counts[JobStatus.PROCESSING] == 0


def run_workers(
    concurrency: int | None = None,
    *,
    settings: Settings | None = None,
    manager: JobManager | None = None,
    engine: MusicEngine | None = None,
    exit_when_empty: bool = False,
    max_jobs: int | None = None,
    stop_grace_seconds: float = STOP_GRACE_SECONDS,
    install_signal_handlers: bool = True,
    stop: threading.Event | None = None,
    on_finished: Callable[[Job], None] | None = None,
) -> int:
    """Run ``concurrency`` workers in threads until they stop; return the jobs they ran.

    The database is opened (and migrated, when ``auto_migrate`` is on) and librosa is warmed
    up before the first claim. SIGTERM or SIGINT stops the workers gracefully (see the module
    docstring); the handlers are installed only when called from the main thread.

    Raises
    ------
    DatabaseUnavailableError
        At start-up, or when a worker lost the database (the others are stopped first; their
        jobs are finished or released).
    """
    settings = settings or get_settings()
    concurrency = concurrency or settings.worker_concurrency or 1
    manager = manager or JobManager(get_database(settings), settings=settings)
    engine = engine or get_engine()
    from dgx_music.audio import metadata

    metadata.warm_up()

    stop = stop or threading.Event()
    abort = threading.Event()
    workers = [
        Worker(
            manager,
            worker_id=default_worker_id(index),
            engine=engine,
            settings=settings,
            stop=stop,
            abort=abort,
            exit_when_empty=exit_when_empty,
            max_jobs=max_jobs,
            on_finished=on_finished,
        )
        for index in range(concurrency)
    ]

    def run(worker: Worker) -> None:
        try:
            worker.run()
        except DgxMusicError as exc:
            worker.error = exc
            stop.set()  # the database is gone for everyone: stop the others too
        except Exception as exc:
            worker.error = DgxMusicError(f"worker {worker.worker_id} crashed: {exc}")
            logger.exception("worker %s crashed", worker.worker_id)
            stop.set()

    threads = [
        threading.Thread(target=run, args=(worker,), name=worker.worker_id) for worker in workers
    ]
    with _signal_handlers(stop, abort, enabled=install_signal_handlers):
        for thread in threads:
            thread.start()
        deadline: float | None = None
        while any(thread.is_alive() for thread in threads):
            for thread in threads:
                thread.join(SUPERVISE_INTERVAL / len(threads))
            if stop.is_set() and deadline is None:
                deadline = time.monotonic() + stop_grace_seconds
            if deadline is not None and time.monotonic() >= deadline and not abort.is_set():
                logger.warning(
                    "jobs still running %.0f s after the stop signal: releasing them",
                    stop_grace_seconds,
                    extra={"action": "release_on_stop"},
                )
                abort.set()
    for worker in workers:
        if worker.error is not None:
            raise worker.error
    return sum(worker.processed for worker in workers)


@contextmanager
def _signal_handlers(
    stop: threading.Event, abort: threading.Event, *, enabled: bool
) -> Iterator[None]:
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if stop.is_set():
            logger.warning("%s again: releasing running jobs now", name)
            abort.set()
        else:
            logger.warning("%s: finishing running jobs, claiming no more", name)
            stop.set()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
