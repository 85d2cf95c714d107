"""Idle workers of this process wake the moment a job is queued here, not at their next poll.

A worker that finds the queue empty waits ``Settings.poll_seconds`` (0.5 s) before it looks
again, so a job submitted through the API, whose workers run in the same process, used to sit
pending for up to that long (0.25 s on average) before a worker claimed it. :func:`job_queued`,
called by :meth:`dgx_music.jobs.queue.JobManager.submit`, sets an event per database that
:func:`wait_for_work` returns on. Workers in other processes (``dgx-music worker``) still find
new jobs by polling, as does every worker for jobs a recovery or a release puts back.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING
from weakref import WeakKeyDictionary

if TYPE_CHECKING:
    from dgx_music.storage.database import Database

#: How often a waiting worker also checks its stop event, seconds: the longest a stop waits.
STOP_CHECK_SECONDS = 0.05

_events: WeakKeyDictionary[Database, threading.Event] = WeakKeyDictionary()
_events_lock = threading.Lock()


def _event(database: Database) -> threading.Event:
    with _events_lock:
        event = _events.get(database)
        if event is None:
            event = _events[database] = threading.Event()
        return event


def job_queued(database: Database) -> None:
    """Wake the workers of this process that wait for work on ``database``."""
    _event(database).set()


def wait_for_work(database: Database, stop: threading.Event, seconds: float) -> bool:
    """Wait up to ``seconds`` for a job queued on ``database`` in this process.

    Returns early, with ``True``, when one was; with ``False`` when ``stop`` is set or the time
    is up. A wake-up is taken by the first worker to see it; the others, if they miss it, look
    at their next poll.
    """
    event = _event(database)
    deadline = time.monotonic() + seconds
    while not stop.is_set():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        if event.wait(min(STOP_CHECK_SECONDS, remaining)):
            event.clear()
            return True
    return False
