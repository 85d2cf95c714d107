"""The queue's workers, run inside the API process (``dgx-music serve`` does by default).

:class:`WorkerPool` runs :func:`dgx_music.jobs.worker.run_workers` in a background thread for
the lifetime of the application. When the database goes away the workers stop; the pool waits
and starts them again, so the service heals when the database comes back. Uvicorn owns the
process's signals: the pool is stopped by the application's shutdown, which lets running jobs
finish (or releases them back to the queue after the grace period).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from dgx_music.config import Settings
from dgx_music.errors import DgxMusicError
from dgx_music.jobs.queue import JobManager
from dgx_music.jobs.records import Job
from dgx_music.jobs.worker import STOP_GRACE_SECONDS, run_workers
from dgx_music.storage.database import get_database

logger = logging.getLogger(__name__)

#: How long the pool waits before starting workers again after they stopped on an error, s.
RESTART_DELAY = 5.0


class WorkerPool:
    """``concurrency`` worker threads that claim jobs while the application runs.

    Parameters
    ----------
    settings
        Database, output directory, lease and poll intervals.
    concurrency
        Worker threads; the model is shared between them.
    on_finished
        Called with every job the workers complete or fail (the metrics' observer).
    stop_grace_seconds
        After :meth:`stop`, how long running jobs may take before they are released, seconds.
    """

    def __init__(
        self,
        settings: Settings,
        concurrency: int,
        *,
        on_finished: Callable[[Job], None] | None = None,
        stop_grace_seconds: float = STOP_GRACE_SECONDS,
    ) -> None:
        self.settings = settings
        self.concurrency = concurrency
        self.on_finished = on_finished
        self.stop_grace_seconds = stop_grace_seconds
        self._stopping = threading.Event()
        self._run_stop: threading.Event | None = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._running = False

    @property
    def running(self) -> bool:
        """Whether the workers are claiming jobs now."""
        return self._running

    def start(self) -> None:
        self._running = True
        self._thread = threading.Thread(target=self._supervise, name="dgx-music-workers")
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Claim no more jobs, let running ones finish, and wait for the threads to end."""
        with self._lock:
            self._stopping.set()
            if self._run_stop is not None:
                self._run_stop.set()
        if self._thread is not None:
            self._thread.join(timeout if timeout is not None else self.stop_grace_seconds + 30)
            if self._thread.is_alive():
                logger.error("workers did not stop in time", extra={"action": "workers_stop"})

    def _supervise(self) -> None:
        while not self._stopping.is_set():
            run_stop = threading.Event()
            with self._lock:
                if self._stopping.is_set():
                    return
                self._run_stop = run_stop
            try:
                manager = JobManager(get_database(self.settings), settings=self.settings)
                self._running = True  # again, after a restart
                run_workers(
                    self.concurrency,
                    settings=self.settings,
                    manager=manager,
                    on_finished=self.on_finished,
                    stop=run_stop,
                    stop_grace_seconds=self.stop_grace_seconds,
                    install_signal_handlers=False,
                )
            except DgxMusicError as exc:
                logger.error(
                    "workers stopped: %s; starting them again in %.0f s",
                    exc,
                    RESTART_DELAY,
                    extra={"action": "workers_restart"},
                )
            except Exception:
                logger.exception(
                    "workers crashed; starting them again in %.0f s",
                    RESTART_DELAY,
                    extra={"action": "workers_restart"},
                )
            finally:
                self._running = False
            self._stopping.wait(RESTART_DELAY)
