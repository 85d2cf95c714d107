"""Database consistency and integrity against the files on disk (spec, module 5).

Runs on SQLite and PostgreSQL. Rows and files come from the real pipeline; faults are
injected at the boundary where they happen in life (a failing commit, a vanished file).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
import soundfile
from sqlalchemy import insert

from dgx_music.errors import StorageError
from dgx_music.jobs.pipeline import generate_and_record
from dgx_music.jobs.queue import JobManager
from dgx_music.jobs.worker import Worker
from dgx_music.storage.models import Generation, GenerationStatus, Prompt
from tests.utils.db_helpers import (
    get_orphaned_files,
    get_orphaned_records,
    synth_request,
    temp_files,
    verify_database_consistency,
    wav_files,
)

pytestmark = pytest.mark.usefixtures("warm_metadata")


@pytest.fixture
def history(manager: JobManager) -> JobManager:
    """Two CLI-style generations, two queued ones drained by a worker, one left pending."""
    for seed in (1, 2):
        generate_and_record(synth_request(seed=seed), manager=manager)
    for seed in (3, 4):
        manager.submit(synth_request(seed=seed))
    Worker(manager, worker_id="history", exit_when_empty=True).run()
    manager.submit(synth_request(seed=5))
    return manager


def generation_row(prompt_id: int, **values: object) -> dict[str, object]:
    row: dict[str, object] = {
        "id": str(uuid.uuid4()),
        "prompt_id": prompt_id,
        "model": "synth",
        "duration": 1.0,
        "seed": 1,
        "temperature": 1.0,
        "top_k": 250,
        "top_p": 0.0,
        "guidance_scale": 3.0,
        "status": GenerationStatus.PENDING,
        "attempts": 0,
        "created_at": datetime.now(UTC),
    }
    row.update(values)
    return row


class TestDatabaseIntegrity:
    def test_all_generations_have_database_records(self, history: JobManager):
        files = wav_files(history.output_dir)
        rows = {job.file_path for job in history.list(limit=100)[0] if job.file_path}
        assert len(files) == 4, files  # every completed generation wrote exactly one file
        assert {str(path.relative_to(history.output_dir)) for path in files} == rows
        with history.database.session() as session:
            assert get_orphaned_files(session, history.output_dir) == []
            report = verify_database_consistency(session, history.output_dir)
        assert report["consistent"], report
        assert report["by_status"] == {"completed": 4, "pending": 1}
        # A file the database does not know is found by both independent checks.
        stray = history.output_dir / "2025" / "02" / f"{uuid.uuid4()}.wav"
        stray.parent.mkdir(parents=True)
        stray.write_bytes(files[0].read_bytes())
        with history.database.session() as session:
            assert get_orphaned_files(session, history.output_dir) == [stray]
        assert [f.relative_path for f in history.check().orphan_files] == [
            str(stray.relative_to(history.output_dir))
        ]

    def test_completed_generations_have_files(self, history: JobManager):
        completed, total = history.list(status=GenerationStatus.COMPLETED, limit=100)
        assert total == 4
        for job in completed:
            assert (history.output_dir / job.file_path).is_file()  # type: ignore[operator]
        pending, _ = history.list(status=GenerationStatus.PENDING)
        assert [job.file_path for job in pending] == [None]

    def test_database_records_match_file_properties(self, history: JobManager):
        for job in history.list(status=GenerationStatus.COMPLETED)[0]:
            info = soundfile.info(str(history.output_dir / job.file_path))  # type: ignore[operator]
            assert (job.sample_rate, job.channels) == (info.samplerate, info.channels)
            assert job.actual_duration == pytest.approx(info.duration)
            assert job.file_size == (history.output_dir / job.file_path).stat().st_size  # type: ignore[operator]
        assert history.check().ok

    def test_foreign_key_constraints(self, manager: JobManager):
        with pytest.raises(StorageError), manager.database.session() as session:
            session.execute(insert(Generation).values(**generation_row(prompt_id=987_654)))
        assert manager.list()[1] == 0

    def test_unique_constraints(self, history: JobManager):
        before = history.list(limit=100)
        taken = before[0][-1]
        completed = next(job for job in before[0] if job.file_path)
        with pytest.raises(StorageError), history.database.session() as session:
            prompt_id = session.get(Generation, taken.id).prompt_id  # type: ignore[union-attr]
            session.execute(
                insert(Generation).values(
                    **generation_row(prompt_id, file_path=completed.file_path)
                )
            )
        with pytest.raises(StorageError), history.database.session() as session:
            session.execute(
                insert(Prompt).values(
                    text=taken.prompt,
                    text_sha256=session.get(Prompt, prompt_id).text_sha256,  # type: ignore[union-attr]
                    use_count=1,
                    first_used_at=datetime.now(UTC),
                    last_used_at=datetime.now(UTC),
                )
            )
        # Nothing that was stored before the failed inserts changed.
        assert history.list(limit=100) == before


class TestTransactionHandling:
    def test_transaction_rollback_on_failure(self, history: JobManager):
        before = history.list(limit=100)
        with pytest.raises(RuntimeError), history.database.session() as session:
            prompt = session.get(Generation, before[0][0].id)
            session.delete(prompt)
            session.flush()
            raise RuntimeError("something failed half-way through the transaction")
        assert history.list(limit=100) == before

    def test_partial_completion_rollback(
        self, manager: JobManager, monkeypatch: pytest.MonkeyPatch
    ):
        """The row cannot be written after the file was: the file goes, no row remains."""

        def refuse(*args: object, **kwargs: object) -> None:
            raise StorageError("database error: disk I/O error")

        monkeypatch.setattr(manager, "record_completed", refuse)
        with pytest.raises(StorageError):
            generate_and_record(synth_request(), manager=manager)
        assert manager.list()[1] == 0
        assert wav_files(manager.output_dir) == []
        assert temp_files(manager.output_dir) == []

        # A worker whose completion commit fails marks the job failed and removes its file.
        job = manager.submit(synth_request())
        monkeypatch.setattr(manager, "complete", refuse)
        Worker(manager, worker_id="failing-commit", max_jobs=1).run()
        failed = manager.get(job.id)
        assert failed.status is GenerationStatus.FAILED
        assert "could not record the result" in (failed.error or "")
        assert wav_files(manager.output_dir) == []


class TestOrphanedData:
    def test_detect_orphaned_files(self, history: JobManager):
        stray = history.output_dir / "2025" / "01" / f"{uuid.uuid4()}.wav"
        stray.parent.mkdir(parents=True)
        stray.write_bytes(b"RIFF not really")
        report = history.check()
        assert not report.ok
        assert [item.relative_path for item in report.orphan_files] == [
            str(stray.relative_to(history.output_dir))
        ]

    def test_detect_orphaned_database_records(self, history: JobManager):
        victim = history.list(status=GenerationStatus.COMPLETED)[0][0]
        (history.output_dir / victim.file_path).unlink()  # type: ignore[operator]
        report = history.check()
        assert [record.id for record in report.missing_files] == [victim.id]
        with history.database.session() as session:  # the independent check agrees
            assert [row.id for row in get_orphaned_records(session, history.output_dir)] == [
                victim.id
            ]

    def test_cleanup_orphaned_files(self, history: JobManager):
        stray = history.output_dir / "2025" / "01" / f"{uuid.uuid4()}.wav"
        stray.parent.mkdir(parents=True)
        stray.write_bytes(b"RIFF not really")
        kept = {p: p.read_bytes() for p in wav_files(history.output_dir) if p != stray}

        dry = history.cleanup(dry_run=True, grace_seconds=0)
        assert dry.removed_files == [str(stray.relative_to(history.output_dir))]
        assert stray.exists()

        done = history.cleanup(grace_seconds=0)
        assert done.removed_files == dry.removed_files
        assert not stray.exists()
        # Every file a completed row points to is still there, unchanged.
        assert {p: p.read_bytes() for p in kept} == kept
        assert history.check().ok


def test_check_ignores_what_is_not_an_output(manager: JobManager):
    """The check owns only YYYY/MM/<uuid>.wav (and its temp files): a person's notes, other
    folders and odd names in the outputs directory are neither orphans nor deleted."""
    out = manager.output_dir
    generate_and_record(synth_request(), manager=manager)
    foreign = [
        out / "notes.txt",
        out / "mixes" / "2025" / "01" / f"{uuid.uuid4()}.wav",
        out / "2025" / "13" / f"{uuid.uuid4()}.wav",
        out / "2025" / "01" / "readme.txt",
        out / "2025" / "01" / "stems" / f"{uuid.uuid4()}.wav",
    ]
    for path in foreign:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"not ours")
    orphan = out / "2025" / "01" / f"{uuid.uuid4()}.wav"
    orphan.write_bytes(b"RIFF ours but unrecorded")

    report = manager.check()
    assert [item.relative_path for item in report.orphan_files] == [str(orphan.relative_to(out))]
    manager.cleanup(grace_seconds=0)
    assert not orphan.exists()
    assert all(path.read_bytes() == b"not ours" for path in foreign)
