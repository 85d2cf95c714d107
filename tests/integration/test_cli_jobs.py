"""The queue and database commands: submit, jobs, worker, generate's record, db upgrade, check and
cleanup, with their exit codes."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dgx_music.audio import metadata
from dgx_music.cli import app
from dgx_music.jobs.queue import JobManager
from dgx_music.jobs.records import JobStatus
from dgx_music.storage.database import Database
from dgx_music.storage.files import relative_output_path
from tests.utils.db_helpers import synth_request, wav_files

pytestmark = pytest.mark.usefixtures("warm_metadata")
runner = CliRunner()
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def invoke(*arguments: str, exit_code: int = 0) -> str:
    result = runner.invoke(app, list(arguments))
    assert result.exit_code == exit_code, result.output
    assert "Traceback" not in result.output
    return result.output


def test_submit_prints_the_id_and_the_worker_runs_it(database: Database, output_dir: Path):
    output = invoke("submit", "dub techno, 118 bpm", "--model", "synth", "--duration", "0.5")
    job_id = output.strip()
    assert UUID.fullmatch(job_id)
    assert job_id in invoke("jobs", "--status", "pending")
    assert job_id not in invoke("jobs", "--status", "completed")
    waiting = invoke("jobs", "show", job_id)
    assert "pending" in waiting
    assert not re.search(r"│ file +│|^metadata", waiting, re.M)  # no file, no metadata yet

    assert "stopped after 1 jobs" in invoke("worker", "--exit-when-empty")
    job = JobManager(database).get(job_id)
    assert job.status is JobStatus.COMPLETED
    shown = invoke("jobs", "show", job_id)
    for expected in ("completed", "dub techno", job.file_path, "tempo_bpm", "sha256"):
        assert expected in shown
    assert re.search(r"│ file +│", shown) and re.search(r"^metadata", shown, re.M)
    assert "1 of 1" in invoke("jobs", "--status", "COMPLETED")


@pytest.mark.parametrize("threshold", [1.01, 0.0])
def test_jobs_show_marks_an_uncertain_tempo_and_key(
    database: Database, output_dir: Path, monkeypatch: pytest.MonkeyPatch, threshold: float
):
    # Every confidence is below 1.01 and none below 0: all flagged, then none.
    monkeypatch.setattr(metadata, "UNCERTAIN_BELOW", threshold)
    job_id = invoke("submit", "house, 124 bpm in C major", "--model", "synth", "--duration", "4")
    invoke("worker", "--exit-when-empty")
    job = JobManager(database).get(job_id.strip())
    shown = invoke("jobs", "show", job.id)
    flagged = threshold > 1
    assert (f"{job.key} (uncertain)" in shown) is flagged
    assert (f"{job.tempo_bpm:.2f} (uncertain)" in shown) is flagged
    assert ("key_uncertain" in job.metadata["flags"]) is flagged
    assert ("tempo_uncertain" in job.metadata["flags"]) is flagged


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        (["submit", "", "--model", "synth"], "prompt"),
        (["submit", "ok", "--model", "synth", "--duration", "0"], "duration"),
        (["submit", "ok", "--model", "synth", "--top-p", "1.5"], "top_p"),
        (["submit", "ok", "--model", "nonexistent-model"], "model"),
        (["jobs", "--status", "lost"], "status"),
        (["worker", "--concurrency", "0"], "concurrency"),
    ],
)
def test_bad_input_exits_2_naming_the_field_and_stores_nothing(
    database: Database, arguments: list[str], field: str
):
    kept = JobManager(database).submit(synth_request())
    output = invoke(*arguments, exit_code=2)
    assert f"{field}:" in output
    assert JobManager(database).list()[1] == 1
    assert JobManager(database).get(kept.id).status is JobStatus.PENDING


def test_unknown_job_exits_1(database: Database):
    output = invoke("jobs", "show", "00000000-0000-4000-8000-000000000000", exit_code=1)
    assert "no generation" in output


def test_cancel_a_pending_job_but_not_a_finished_one(database: Database):
    job_id = invoke("submit", "x", "--model", "synth").strip()
    assert "cancelled" in invoke("jobs", "cancel", job_id)
    assert "cannot become cancelled" in " ".join(
        invoke("jobs", "cancel", job_id, exit_code=1).split()
    )


def test_generate_records_a_completed_generation(database: Database, output_dir: Path):
    output = invoke("generate", "ambient pad in D minor", "--model", "synth", "--duration", "1")
    jobs, total = JobManager(database).list()
    assert total == 1
    job = jobs[0]
    assert job.status is JobStatus.COMPLETED
    assert job.id in output
    assert [path.name for path in wav_files(output_dir)] == [f"{job.id}.wav"]
    assert "ok" in invoke("db", "check")


def test_db_upgrade_is_idempotent(database_url: str, monkeypatch: pytest.MonkeyPatch):
    from dgx_music.config import get_settings

    monkeypatch.setenv("DGX_MUSIC_DATABASE_URL", database_url)
    get_settings.cache_clear()
    from dgx_music.storage.database import head_revision

    first = invoke("db", "upgrade")
    second = invoke("db", "upgrade")
    # The newest migration, whichever it is; the second run changes nothing and says the same.
    assert f"revision {head_revision()}" in " ".join(first.split()) and first == second


def make_every_defect(database: Database, output_dir: Path) -> dict[str, str]:
    """Three completed jobs, then: one file deleted, one file altered, an orphan and a stale
    temp file left behind. Returns what is where."""
    manager = JobManager(database)
    ids = [manager.submit(synth_request(f"p{i}", seed=i)).id for i in range(3)]
    invoke("worker", "--exit-when-empty")
    missing, altered, intact = (manager.get(job_id) for job_id in ids)
    (output_dir / missing.file_path).unlink()
    with (output_dir / altered.file_path).open("r+b") as handle:
        handle.seek(100)
        handle.write(b"\x7f\x7f\x7f\x7f")
    orphan = output_dir / relative_output_path(
        "99999999-9999-4999-8999-999999999999", missing.created_at
    )
    orphan.write_bytes((output_dir / intact.file_path).read_bytes())
    temp = orphan.parent / f".{orphan.name}.dead.tmp"
    temp.write_bytes(b"partial")
    an_hour_ago = time.time() - 3600
    for path in (orphan, temp):
        os.utime(path, (an_hour_ago, an_hour_ago))
    return {
        "missing": missing.id,
        "altered": altered.id,
        "intact": intact.id,
        "orphan": orphan.name,
        "temp": temp.name,
    }


def test_db_check_and_cleanup(database: Database, output_dir: Path):
    assert "ok checked 0 rows" in invoke("db", "check")
    where = make_every_defect(database, output_dir)
    report = " ".join(invoke("db", "check", exit_code=1).split())
    for key in ("missing", "altered", "orphan", "temp"):
        assert where[key] in report, key
    assert "sha256" in report and "4 problems" in report

    before = sorted(path.name for path in output_dir.rglob("*"))
    dry = invoke("db", "cleanup", "--dry-run")
    assert "would" in dry
    assert sorted(path.name for path in output_dir.rglob("*")) == before
    invoke("db", "check", exit_code=1)

    invoke("db", "cleanup")
    manager = JobManager(database)
    assert manager.get(where["missing"]).status is JobStatus.FAILED
    assert manager.get(where["missing"]).file_path is None
    altered = manager.get(where["altered"])
    assert altered.status is JobStatus.COMPLETED
    assert (output_dir / altered.file_path).exists()  # a completed row's file is never deleted
    names = {path.name for path in output_dir.rglob("*") if path.is_file()}
    assert where["orphan"] not in names and where["temp"] not in names
    report = " ".join(invoke("db", "check", exit_code=1).split())
    assert where["altered"] in report and "1 problems" in report


def test_cleanup_leaves_young_orphans_alone(database: Database, output_dir: Path):
    orphan = output_dir / "2026" / "01" / "99999999-9999-4999-8999-999999999999.wav"
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"RIFF")
    output = " ".join(invoke("db", "cleanup").split())
    assert "left alone" in output and orphan.exists()
    invoke("db", "cleanup", "--grace", "0")
    assert not orphan.exists()


def test_cleanup_requeues_stuck_jobs(database: Database, monkeypatch: pytest.MonkeyPatch):
    from dgx_music.config import get_settings

    monkeypatch.setenv("DGX_MUSIC_LEASE_SECONDS", "0.05")
    get_settings.cache_clear()
    manager = JobManager(database)
    job = manager.submit(synth_request())
    manager.claim("dead-worker")
    time.sleep(0.1)
    report = " ".join(invoke("db", "check", exit_code=1).split())
    assert "stuck" in report and "dead-worker" in report
    invoke("db", "cleanup")
    assert manager.get(job.id).status is JobStatus.PENDING
    invoke("db", "check")
