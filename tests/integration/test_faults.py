"""Faults that must lose nothing: full disks, denied writes, a database that goes away, workers
killed mid-job, and workers racing for one job. Each fault is produced for real or at the lowest
level that can fail (``os.write``, ``tempfile.mkstemp``, a closed port, ``SIGKILL``)."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dgx_music.audio import export
from dgx_music.cli import app
from dgx_music.config import get_settings
from dgx_music.errors import DatabaseUnavailableError
from dgx_music.generation.continuation import AudioPrompt
from dgx_music.generation.engine import MusicEngine
from dgx_music.generation.request import GenerationRequest, GenerationResult, ProgressCallback
from dgx_music.jobs import worker as worker_module
from dgx_music.jobs.pipeline import run_job
from dgx_music.jobs.queue import JobManager
from dgx_music.jobs.records import JobStatus
from dgx_music.jobs.worker import Worker
from dgx_music.storage.database import Database
from tests.utils.db_helpers import (
    STALL_VARIABLE,
    FakeClock,
    synth_request,
    temp_files,
    wav_files,
    worker_subprocess_environment,
)

REPO = Path(__file__).resolve().parents[2]
#: Nothing listens here: connections are refused at once.
DEAD_URL = "postgresql+psycopg://postgres:hunter2@127.0.0.1:9/gone"
#: Longest a test waits for a subprocess to reach a state, seconds.
WAIT_LIMIT = 60.0

pytestmark = pytest.mark.usefixtures("warm_metadata")
runner = CliRunner()


def wait_for(condition: Callable[[], bool], what: str, limit: float = WAIT_LIMIT) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {limit:.0f} s waiting for {what}")
        time.sleep(0.05)


def assert_nothing_left(output_dir: Path) -> None:
    assert wav_files(output_dir) == [], "a file without a completed row"
    assert temp_files(output_dir) == [], "a partial temp file"


def full_disk(fd: int, data: object) -> int:
    raise OSError(errno.ENOSPC, "No space left on device")


def denied(*args: object, **kwargs: object) -> tuple[int, str]:
    # Tests may run as root, for whom chmod denies nothing: refuse the create itself.
    raise PermissionError(errno.EACCES, "Permission denied")


# --- disk full, permission denied ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "replacement", "cause"),
    [
        ((export.os, "write"), full_disk, "disk full"),
        ((tempfile, "mkstemp"), denied, "permission denied"),
    ],
    ids=["disk-full", "permission-denied"],
)
def test_export_failure_fails_the_job_and_leaves_nothing(
    manager: JobManager,
    output_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    target: tuple[object, str],
    replacement: Callable[..., object],
    cause: str,
):
    job = manager.submit(synth_request())
    claimed = manager.claim("w1")
    with monkeypatch.context() as patch:
        patch.setattr(*target, replacement)
        failed = run_job(manager, claimed, worker_id="w1")
    assert failed.id == job.id
    assert failed.status is JobStatus.FAILED
    assert cause in failed.error and job.id in failed.error  # the path names the job's file
    assert failed.file_path is None
    assert_nothing_left(output_dir)
    assert manager.check().ok


def test_cli_generate_on_a_full_disk_exits_1_and_records_nothing(
    database: Database, output_dir: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(export.os, "write", full_disk)
    result = runner.invoke(app, ["generate", "x", "--model", "synth", "--duration", "0.5"])
    assert result.exit_code == 1, result.output
    assert "disk full" in result.output
    assert "Traceback" not in result.output
    assert JobManager(database).list()[1] == 0
    assert_nothing_left(output_dir)


# --- the database goes away ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "arguments",
    [
        ["submit", "a groove", "--model", "synth"],
        ["jobs"],
        ["worker", "--exit-when-empty"],
        ["generate", "a groove", "--model", "synth", "--duration", "0.5"],
        ["db", "check"],
        ["db", "upgrade"],
    ],
    ids=lambda arguments: "-".join(arguments[:2]),
)
def test_unreachable_database_at_start_exits_1_with_a_clear_message(
    arguments: list[str], output_dir: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("DGX_MUSIC_DATABASE_URL", DEAD_URL)
    get_settings.cache_clear()
    result = runner.invoke(app, arguments)
    assert result.exit_code == 1, result.output
    output = " ".join(result.output.split())
    assert "postgresql+psycopg://postgres:***@127.0.0.1:9/gone is unavailable" in output
    assert "hunter2" not in output
    assert "Traceback" not in output
    assert_nothing_left(output_dir)


class DatabaseKillingEngine(MusicEngine):
    """Generates normally, but the database is unreachable from the moment generation starts."""

    def __init__(self, kill: Callable[[], None]) -> None:
        super().__init__()
        self.kill = kill

    def generate(
        self,
        request: GenerationRequest,
        progress: ProgressCallback | None = None,
        continuation: AudioPrompt | None = None,
    ) -> GenerationResult:
        self.kill()
        return super().generate(request, progress=progress, continuation=continuation)


def cut_off(database: Database, patch: pytest.MonkeyPatch) -> Callable[[], None]:
    """A function that points ``database``'s sessions at a server that is not there, until
    ``patch`` is undone."""
    dead = Database(DEAD_URL)

    def kill() -> None:
        patch.setattr(database, "sessions", dead.sessions)
        patch.setattr(database, "_write_sessions", dead.sessions)
        patch.setattr(database, "url", dead.url)

    return kill


def test_database_lost_mid_job_stops_the_worker_and_the_job_is_retried(
    database: Database, output_dir: Path, monkeypatch: pytest.MonkeyPatch
):
    clock = FakeClock()
    manager = JobManager(database, clock=clock)
    job = manager.submit(synth_request())
    with monkeypatch.context() as patch:
        engine = DatabaseKillingEngine(cut_off(database, patch))
        worker = Worker(manager, worker_id="w1", engine=engine, exit_when_empty=True)
        with pytest.raises(DatabaseUnavailableError, match="unavailable"):
            worker.run()
    assert worker.error is not None
    assert_nothing_left(output_dir)  # the last lease check failed before the rename

    # The database is back.
    assert manager.get(job.id).status is JobStatus.PROCESSING  # not lost: still leased
    clock.advance(get_settings().lease_seconds + 1)
    survivor = Worker(manager, worker_id="w2", exit_when_empty=True)
    assert survivor.run() == 1
    done = manager.get(job.id)
    assert (done.status, done.worker_id, done.attempts) == (JobStatus.COMPLETED, "w2", 2)
    assert manager.check().ok


def test_cli_worker_exits_1_when_the_database_goes_away(
    database: Database, output_dir: Path, monkeypatch: pytest.MonkeyPatch
):
    job = JobManager(database).submit(synth_request())
    with monkeypatch.context() as patch:
        engine = DatabaseKillingEngine(cut_off(database, patch))
        patch.setattr(worker_module, "get_engine", lambda: engine)
        result = runner.invoke(app, ["worker", "--exit-when-empty"])
    assert result.exit_code == 1, result.output
    assert "unavailable" in result.output and "Traceback" not in result.output
    assert JobManager(database).get(job.id).status is JobStatus.PROCESSING
    assert_nothing_left(output_dir)


def test_database_lost_at_commit_keeps_the_job_recoverable(
    database: Database, output_dir: Path, monkeypatch: pytest.MonkeyPatch
):
    clock = FakeClock()
    manager = JobManager(database, clock=clock)
    job = manager.submit(synth_request())
    claimed = manager.claim("w1")

    def unreachable(*args: object, **kwargs: object) -> None:
        raise DatabaseUnavailableError("database is unavailable: connection refused")

    with monkeypatch.context() as patch:
        patch.setattr(manager, "complete", unreachable)
        with pytest.raises(DatabaseUnavailableError):
            run_job(manager, claimed, worker_id="w1")
    # The commit may have happened for all the worker knows, so the file stays; the row is
    # still processing under an expiring lease, so nothing is inconsistent.
    assert len(wav_files(output_dir)) == 1
    assert manager.check().ok
    clock.advance(get_settings().lease_seconds + 1)
    assert manager.recover_expired() == 1
    assert_nothing_left(output_dir)
    Worker(manager, worker_id="w2", exit_when_empty=True).run()
    done = manager.get(job.id)
    assert (done.status, done.attempts) == (JobStatus.COMPLETED, 2)
    assert manager.check().ok


def test_cli_generate_removes_its_file_when_the_row_cannot_be_written(
    database: Database, output_dir: Path, monkeypatch: pytest.MonkeyPatch
):
    def unreachable(*args: object, **kwargs: object) -> None:
        raise DatabaseUnavailableError("database x is unavailable: server closed the connection")

    with monkeypatch.context() as patch:
        patch.setattr(JobManager, "record_completed", unreachable)
        result = runner.invoke(app, ["generate", "x", "--model", "synth", "--duration", "0.5"])
    assert result.exit_code == 1, result.output
    assert "unavailable" in result.output
    assert JobManager(database).list()[1] == 0
    assert_nothing_left(output_dir)


# --- killed and stopped workers ----------------------------------------------------------------


def subprocess_environment(database_url: str, output_dir: Path, **extra: str) -> dict[str, str]:
    """A worker subprocess's environment with a 2 s lease renewed every 0.5 s."""
    return worker_subprocess_environment(
        database_url,
        output_dir,
        DGX_MUSIC_LEASE_SECONDS="2",
        DGX_MUSIC_HEARTBEAT_SECONDS="0.5",
        **extra,
    )


def start_helper(entry: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    code = f"from tests.utils.db_helpers import {entry}; {entry}()"
    return subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


@pytest.mark.slow
def test_sigkilled_worker_job_is_completed_once_by_another(
    database: Database,
    database_url: str,
    output_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
):
    manager = JobManager(database)
    job = manager.submit(synth_request(duration=1.0))
    env = subprocess_environment(database_url, output_dir, **{STALL_VARIABLE: "60"})
    doomed = start_helper("stalling_worker_main", env)
    try:
        # The worker stalls after writing its temp file: kill it with the file on disk.
        wait_for(lambda: temp_files(output_dir) != [], "the worker's temp file")
        assert manager.get(job.id).worker_id == "stalling-worker"
        os.kill(doomed.pid, signal.SIGKILL)
        doomed.wait(timeout=10)
    finally:
        if doomed.poll() is None:
            doomed.kill()
            doomed.wait()
    assert doomed.returncode == -signal.SIGKILL
    assert manager.get(job.id).status is JobStatus.PROCESSING

    monkeypatch.setenv("DGX_MUSIC_LEASE_SECONDS", "2")
    get_settings.cache_clear()
    survivor = Worker(JobManager(database), worker_id="survivor", exit_when_empty=True)
    started = time.monotonic()
    assert survivor.run() == 1  # waits for the lease to expire, recovers, completes
    assert time.monotonic() - started < 30
    done = manager.get(job.id)
    assert (done.status, done.worker_id, done.attempts) == (JobStatus.COMPLETED, "survivor", 2)
    assert [path.name for path in wav_files(output_dir)] == [f"{job.id}.wav"]
    assert temp_files(output_dir) == []
    assert manager.check().ok


# Signal handling does not depend on the backend: SQLite only, to save a worker start-up.
@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_sigterm_lets_the_running_job_finish_and_exits_cleanly(
    database: Database, database_url: str, output_dir: Path
):
    manager = JobManager(database)
    job = manager.submit(synth_request())
    env = subprocess_environment(database_url, output_dir, **{STALL_VARIABLE: "1.5"})
    process = start_helper("stalling_pool_main", env)
    try:
        wait_for(lambda: manager.get(job.id).status is JobStatus.PROCESSING, "the claim")
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=WAIT_LIMIT)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, out.decode(errors="replace")
    assert "SIGTERM" in out.decode(errors="replace")
    done = manager.get(job.id)
    assert done.status is JobStatus.COMPLETED
    assert manager.check().ok


def test_the_first_signal_stops_claiming_and_the_second_releases_running_jobs():
    # The test above proves this end to end in a worker process; this is the same handler in
    # this process, where coverage sees it, with the handlers the process had put back after.
    assert threading.current_thread() is threading.main_thread()
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    stop, abort = threading.Event(), threading.Event()
    with worker_module._signal_handlers(stop, abort, enabled=True):
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.wait(WAIT_LIMIT) and not abort.is_set()
        os.kill(os.getpid(), signal.SIGINT)
        assert abort.wait(WAIT_LIMIT)
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


# --- racing workers ----------------------------------------------------------------------------


def race_for_one_claim(rivals: list[JobManager]) -> tuple[list[str], list[BaseException]]:
    """Every rival claims at the same moment; returns who got a job, and any errors."""
    barrier = threading.Barrier(len(rivals))
    winners: list[str] = []
    errors: list[BaseException] = []

    def race(manager: JobManager, name: str) -> None:
        try:
            barrier.wait(timeout=10)
            if manager.claim(name) is not None:
                winners.append(name)
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=race, args=(rival, f"w{i}")) for i, rival in enumerate(rivals)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return winners, errors


def test_two_workers_racing_for_one_job_exactly_one_wins(database: Database, database_url: str):
    rivals = [JobManager(Database(database_url)) for _ in range(2)]
    try:
        for _ in range(10):
            job = JobManager(database).submit(synth_request())
            winners, errors = race_for_one_claim(rivals)
            assert errors == []
            assert len(winners) == 1
            claimed = JobManager(database).get(job.id)
            assert (claimed.worker_id, claimed.attempts) == (winners[0], 1)
    finally:
        for rival in rivals:
            rival.database.dispose()
