"""Error handling and edge cases, end to end (spec, module 3).

Bad input is refused at the door with the field named (CLI exit 2), and nothing already stored
changes. Resource failures fail the job with a message a person can act on and leave neither a
partial file nor a row pointing at a missing file. GPU faults are injected into the real tiny
MusicGen backend, since this machine has no GPU.
"""

from __future__ import annotations

import errno
import logging
import tempfile
from collections.abc import Callable
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from dgx_music.audio import export
from dgx_music.cli import app
from dgx_music.config import get_settings
from dgx_music.generation.engine import MusicEngine
from dgx_music.jobs.queue import JobManager
from dgx_music.jobs.records import Job
from dgx_music.jobs.worker import Worker
from dgx_music.storage.models import GenerationStatus
from tests.utils.db_helpers import synth_request, temp_files, wav_files
from tests.utils.mock_helpers import (
    cuda_out_of_memory,
    inject_generate_faults,
    simulate_cuda_unavailable,
)

pytestmark = pytest.mark.usefixtures("warm_metadata")
runner = CliRunner()


@pytest.fixture
def stored(manager: JobManager) -> list[Job]:
    """A history that bad input must leave exactly as it is."""
    manager.submit(synth_request(seed=1))
    Worker(manager, worker_id="setup", exit_when_empty=True).run()
    manager.submit(synth_request(seed=2))
    return manager.list(limit=100)[0]


def submit_via_cli(*arguments: str) -> Any:
    return runner.invoke(app, ["submit", *arguments])


def assert_refused(result: Any, field: str, manager: JobManager, stored: list[Job]) -> None:
    assert result.exit_code == 2, result.output
    assert f"{field}:" in result.output
    assert "Traceback" not in result.output
    assert manager.list(limit=100)[0] == stored


class TestInvalidInputs:
    def test_empty_prompt(self, manager: JobManager, stored: list[Job]):
        assert_refused(submit_via_cli("   ", "--model", "synth"), "prompt", manager, stored)

    def test_too_long_prompt(self, manager: JobManager, stored: list[Job]):
        result = submit_via_cli("a" * 1001, "--model", "synth")
        assert_refused(result, "prompt", manager, stored)
        assert "1000" in result.output

    def test_special_characters_in_prompt(self, manager: JobManager, stored: list[Job]):
        prompt = "Ünïcödé 🎹 \"quotes\" 'single' <b>html</b> ; DROP TABLE generations; -- \\ %s"
        result = submit_via_cli(prompt, "--model", "synth", "--duration", "1")
        assert result.exit_code == 0, result.output
        Worker(manager, worker_id="special", exit_when_empty=True).run()
        newest = manager.list(limit=1)[0][0]
        assert newest.prompt == prompt
        assert newest.status is GenerationStatus.COMPLETED
        assert prompt not in newest.file_path  # type: ignore[operator]

    def test_negative_duration(self, manager: JobManager, stored: list[Job]):
        result = submit_via_cli("ok", "--model", "synth", "--duration", "-5")
        assert_refused(result, "duration", manager, stored)

    def test_zero_duration(self, manager: JobManager, stored: list[Job]):
        result = submit_via_cli("ok", "--model", "synth", "--duration", "0")
        assert_refused(result, "duration", manager, stored)

    def test_too_long_duration(self, manager: JobManager, stored: list[Job]):
        result = submit_via_cli("ok", "--model", "synth", "--duration", "300.01")
        assert_refused(result, "duration", manager, stored)
        assert "300" in result.output

    def test_invalid_model_name(self, manager: JobManager, stored: list[Job]):
        result = submit_via_cli("ok", "--model", "facebook/musicgen-gigantic")
        assert_refused(result, "model", manager, stored)
        assert "facebook/musicgen-small" in result.output


def run_failing_job(
    manager: JobManager, monkeypatch: pytest.MonkeyPatch, target: Any, name: str, fault: Callable
) -> Job:
    job = manager.submit(synth_request(duration=1.0))
    monkeypatch.setattr(target, name, fault)
    Worker(manager, worker_id="faulty", max_jobs=1).run()
    monkeypatch.undo()
    failed = manager.get(job.id)
    assert failed.status is GenerationStatus.FAILED
    assert failed.file_path is None
    assert wav_files(manager.output_dir) == [] or manager.check().ok
    assert temp_files(manager.output_dir) == []
    return failed


class TestResourceFailures:
    def test_disk_full_simulation(self, manager: JobManager, monkeypatch: pytest.MonkeyPatch):
        def full(fd: int, data: object) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

        failed = run_failing_job(manager, monkeypatch, export.os, "write", full)
        assert "disk full" in (failed.error or "")

    def test_output_directory_missing(
        self, manager: JobManager, tmp_path, monkeypatch: pytest.MonkeyPatch
    ):
        # Missing but creatable: the worker makes it and the job completes.
        fresh = tmp_path / "new" / "outputs"
        monkeypatch.setenv("DGX_MUSIC_OUTPUT_DIR", str(fresh))
        get_settings.cache_clear()
        created = JobManager(manager.database)
        job = created.submit(synth_request(duration=0.5))
        Worker(created, worker_id="new-dir", max_jobs=1).run()
        done = created.get(job.id)
        assert done.status is GenerationStatus.COMPLETED, done.error
        assert (fresh / done.file_path).is_file()  # type: ignore[operator]

        # Missing and impossible: a file sits where the directory should be.
        blocker = tmp_path / "not-a-directory"
        blocker.write_text("in the way")
        monkeypatch.setenv("DGX_MUSIC_OUTPUT_DIR", str(blocker / "outputs"))
        get_settings.cache_clear()
        moved = JobManager(manager.database)
        job = moved.submit(synth_request(duration=0.5))
        Worker(moved, worker_id="no-dir", max_jobs=1).run()
        failed = moved.get(job.id)
        assert failed.status is GenerationStatus.FAILED
        assert failed.file_path is None and failed.sha256 is None
        # The message says which step failed and why (ENOTDIR), not a generic "error".
        # ... and where: the directory it could not make, below the configured outputs.
        assert failed.error.startswith(f"cannot prepare the output directory {blocker}/outputs")
        assert failed.error.endswith(": Not a directory")
        assert blocker.read_text() == "in the way"
        assert not list(tmp_path.rglob(f"{job.id}*"))

    def test_file_permission_error(self, manager: JobManager, monkeypatch: pytest.MonkeyPatch):
        def denied(*args: object, **kwargs: object) -> tuple[int, str]:
            raise PermissionError(errno.EACCES, "Permission denied")

        failed = run_failing_job(manager, monkeypatch, tempfile, "mkstemp", denied)
        assert "permission denied" in (failed.error or "")

    def test_database_connection_failure(self, tmp_path, monkeypatch: pytest.MonkeyPatch):
        # Nothing listens on port 9 of the loopback: the database is unreachable at start.
        monkeypatch.setenv(
            "DGX_MUSIC_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:9/nowhere"
        )
        get_settings.cache_clear()
        result = runner.invoke(app, ["generate", "ok", "--model", "synth", "--duration", "1"])
        assert result.exit_code == 1, result.output
        assert "unavailable" in result.output and "127.0.0.1:9" in result.output
        assert "Traceback" not in result.output
        assert not list((tmp_path / "outputs").rglob("*.wav"))


class TestGPUFallback:
    def test_cuda_unavailable_cpu_fallback(
        self, manager: JobManager, monkeypatch: pytest.MonkeyPatch, caplog
    ):
        monkeypatch.setenv("DGX_MUSIC_DEVICE", "auto")
        simulate_cuda_unavailable(monkeypatch)
        get_settings.cache_clear()
        jobs = [manager.submit(synth_request(model="tiny", duration=0.5, seed=i)) for i in (1, 2)]
        with caplog.at_level(logging.WARNING, logger="dgx_music.generation.engine"):
            Worker(manager, worker_id="cpu-only", engine=MusicEngine(), max_jobs=2).run()
        for job in jobs:
            done = manager.get(job.id)
            assert done.status is GenerationStatus.COMPLETED, done.error
            assert done.device == "cpu"
            assert done.lufs == pytest.approx(-16.0, abs=0.2)
        # The person running it is told once, not per job, that it fell back to the CPU.
        fallback = [r for r in caplog.records if getattr(r, "action", "") == "cpu_fallback"]
        assert len(fallback) == 1, [r.getMessage() for r in caplog.records]
        assert fallback[0].levelno == logging.WARNING
        assert "CUDA is not available" in fallback[0].getMessage()
        assert "CPU" in fallback[0].getMessage()

    @pytest.mark.parametrize("fallback", [True, False])
    def test_gpu_memory_error_handling(
        self, manager: JobManager, monkeypatch: pytest.MonkeyPatch, fallback: bool
    ):
        monkeypatch.setenv("DGX_MUSIC_CPU_FALLBACK", str(fallback).lower())
        get_settings.cache_clear()
        engine = MusicEngine()
        backend = engine.backend("tiny")
        backend.load()  # type: ignore[attr-defined]
        calls = inject_generate_faults(
            monkeypatch,
            backend._model,
            cuda_out_of_memory,
            times=1,  # type: ignore[attr-defined]
        )
        monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
        job = manager.submit(synth_request(model="tiny", duration=0.5))
        Worker(manager, worker_id="oom", engine=engine, max_jobs=1).run()
        result = manager.get(job.id)
        if fallback:
            assert result.status is GenerationStatus.COMPLETED, result.error
            assert result.device == "cpu" and calls == [True, False]
        else:
            assert result.status is GenerationStatus.FAILED
            assert "3.50 GiB" in (result.error or "") and calls == [True]
            assert result.file_path is None and wav_files(manager.output_dir) == []
