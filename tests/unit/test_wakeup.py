"""A job queued in this process wakes its idle workers at once, whatever their poll interval."""

from __future__ import annotations

import threading
import time

import pytest

from dgx_music.config import get_settings
from dgx_music.jobs import wakeup
from dgx_music.jobs.queue import JobManager
from dgx_music.jobs.records import JobStatus
from dgx_music.jobs.worker import Worker
from dgx_music.storage.database import Database
from tests.utils.db_helpers import synth_request
from tests.utils.mock_helpers import MockMusicGenerationEngine

#: A poll interval no test waits out: only a wake-up can start the job in time.
LONG_POLL = "30"


def test_an_idle_worker_claims_a_job_submitted_here_without_waiting_for_its_poll(
    database: Database, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("DGX_MUSIC_POLL_SECONDS", LONG_POLL)
    get_settings.cache_clear()
    manager = JobManager(database)
    worker = Worker(manager, worker_id="w1", engine=MockMusicGenerationEngine(0.0), max_jobs=1)
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        time.sleep(0.3)  # the worker found the queue empty and waits
        submitted = time.monotonic()
        job = JobManager(database).submit(synth_request())  # another manager, as in the API
        thread.join(timeout=10)
        waited = time.monotonic() - submitted
    finally:
        worker.stop.set()
        thread.join(timeout=10)
    assert not thread.is_alive()
    assert manager.get(job.id).status == JobStatus.COMPLETED
    assert waited < 5.0, f"the job waited {waited:.1f} s for the worker's 30 s poll"


def test_a_stop_ends_the_wait_at_once(database: Database):
    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()
    started = time.monotonic()
    assert wakeup.wait_for_work(database, stop, 30.0) is False
    assert time.monotonic() - started < 0.2 + 5 * wakeup.STOP_CHECK_SECONDS


def test_with_nothing_queued_the_wait_lasts_its_time(database: Database):
    started = time.monotonic()
    assert wakeup.wait_for_work(database, threading.Event(), 0.3) is False
    assert time.monotonic() - started >= 0.3


def test_a_wake_up_is_for_its_own_database_only(database: Database, tmp_path):
    other = Database(f"sqlite:///{tmp_path / 'other.db'}")
    try:
        wakeup.job_queued(other)
        assert wakeup.wait_for_work(database, threading.Event(), 0.2) is False
        assert wakeup.wait_for_work(other, threading.Event(), 0.2) is True
    finally:
        other.dispose()
