"""The database helpers and fixtures: seeding, consistency checks, orphans, files, cleanup.

Runs on SQLite and PostgreSQL. Each check is shown to pass a consistent database and to report
each kind of inconsistency, and each factory to refuse bad input with the field named.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dgx_music.audio.export import export_wav
from dgx_music.jobs.queue import JobManager
from dgx_music.storage.models import Generation, GenerationStatus, Prompt
from tests.utils import signals
from tests.utils.db_helpers import (
    bulk_seed_generations,
    cleanup_test_files,
    create_generation_with_file,
    get_orphaned_files,
    get_orphaned_records,
    seed_test_generations,
    synth_request,
    verify_database_consistency,
)


def wav_at(path: Path, seconds: float = 0.5) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    export_wav(signals.sine(seconds, amplitude=0.3), 32_000, path)
    return path


def rows(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(Generation)) or 0


def test_seed_test_generations_returns_rows_in_the_spec_shape(clean_db_session: Session):
    seeded = seed_test_generations(clean_db_session)
    assert len(seeded) == 10 and all(isinstance(row, Generation) for row in seeded)
    assert [row.created_at for row in seeded] == sorted(row.created_at for row in seeded)
    clean_db_session.commit()
    assert rows(clean_db_session) == 10
    # A second call adds rows (no unique-prompt collision) and honours the distribution.
    more = seed_test_generations(clean_db_session, 20, {"failed": 1})
    assert {row.status for row in more} == {GenerationStatus.FAILED}
    assert all(row.error and row.file_path is None for row in more)
    completed = [row for row in seeded if row.status is GenerationStatus.COMPLETED]
    assert all(row.file_path and row.sha256 and row.sample_rate == 32_000 for row in completed)


@pytest.mark.parametrize(
    ("distribution", "message"),
    [
        ({"finished": 1}, "unknown status 'finished'"),
        ({"pending": -1}, r"status_distribution\[pending\]: weight -1"),
        ({"pending": 0}, "at least one weight"),
    ],
)
def test_seeding_refuses_a_bad_distribution(
    clean_db_session: Session, distribution: dict, message: str
):
    with pytest.raises(ValueError, match=message):
        seed_test_generations(clean_db_session, 5, distribution)
    with pytest.raises(ValueError, match="count: -1"):
        bulk_seed_generations(clean_db_session, -1)


def test_bulk_seeder_returns_ids_for_the_benchmarks(clean_db_session: Session):
    ids = bulk_seed_generations(clean_db_session, 300, distinct_prompts=4)
    assert len(set(ids)) == 300 and all(isinstance(job_id, str) for job_id in ids)
    assert clean_db_session.scalar(select(func.count()).select_from(Prompt)) == 4


def test_seeded_db_session_holds_ten_committed_rows(seeded_db_session: Session, database):
    with database.session() as other:  # a second connection sees them: they were committed
        assert rows(other) == 10


def test_a_pipeline_history_is_consistent(manager: JobManager, db_session: Session):
    from dgx_music.jobs.pipeline import generate_and_record

    generate_and_record(synth_request(duration=0.5), manager=manager)
    manager.submit(synth_request(seed=3))
    report = verify_database_consistency(db_session, manager.output_dir)
    assert report["consistent"], report
    assert report["by_status"] == {"completed": 1, "pending": 1} and report["total"] == 2
    # The independent check and the service's own check agree.
    assert manager.check().ok


def test_each_kind_of_inconsistency_is_reported(manager: JobManager, db_session: Session):
    from dgx_music.jobs.pipeline import generate_and_record

    kept, lost, changed = (
        generate_and_record(synth_request(seed=seed, duration=0.5), manager=manager).job
        for seed in (1, 2, 3)
    )
    out = manager.output_dir
    (out / lost.file_path).unlink()  # type: ignore[operator]
    changed_path = out / changed.file_path  # type: ignore[operator]
    changed_path.write_bytes(changed_path.read_bytes()[:-64])  # truncated after the commit
    stray = wav_at(out / "2025" / "01" / "stray.wav")
    pending = db_session.get_one(Generation, manager.submit(synth_request(seed=9)).id)
    pending.worker_id = "ghost"  # pending but held: an illegal state
    db_session.flush()

    report = verify_database_consistency(db_session, out)
    assert not report["consistent"]
    assert report["orphaned_records"] == [lost.id]
    assert report["orphaned_files"] == [stray]
    assert set(report["mismatched_files"]) == {changed.id}
    assert any("file_size" in problem for problem in report["mismatched_files"][changed.id])
    assert report["invalid_rows"] == {pending.id: "pending but held by a worker"}
    assert kept.id not in report["mismatched_files"]
    assert get_orphaned_files(db_session, out) == [stray]
    assert [row.id for row in get_orphaned_records(db_session, out)] == [lost.id]


def test_a_completed_row_without_file_facts_is_invalid(clean_db_session: Session, output_dir):
    row = seed_test_generations(clean_db_session, 1, {"completed": 1})[0]
    row.sha256 = None
    clean_db_session.flush()
    report = verify_database_consistency(clean_db_session, output_dir)
    assert report["invalid_rows"] == {row.id: "completed without its file facts"}


def test_create_generation_with_file_and_cleanup(clean_db_session: Session, output_dir: Path):
    path = wav_at(output_dir / "2026" / "01" / "made.wav", seconds=0.75)
    row = create_generation_with_file(clean_db_session, "a recorded take", path)
    clean_db_session.commit()
    assert row.status is GenerationStatus.COMPLETED
    assert (row.file_path, row.sample_rate, row.channels) == ("2026/01/made.wav", 32_000, 2)
    assert row.actual_duration == pytest.approx(0.75)
    assert row.prompt.text == "a recorded take" and row.prompt.use_count == 1
    assert verify_database_consistency(clean_db_session, output_dir)["consistent"]
    second = create_generation_with_file(
        clean_db_session, "a recorded take", wav_at(output_dir / "b.wav")
    )
    assert second.prompt_id == row.prompt_id and second.prompt.use_count == 2

    assert cleanup_test_files([row, second], output_dir) == 2
    assert not path.exists()
    assert cleanup_test_files([row], output_dir) == 0  # already gone: not counted
    assert [r.id for r in get_orphaned_records(clean_db_session, output_dir)] == [
        row.id,
        second.id,
    ]


def test_create_generation_with_file_refuses_bad_input(
    clean_db_session: Session, output_dir: Path, tmp_path: Path
):
    inside = wav_at(output_dir / "x.wav")
    outside = wav_at(tmp_path / "elsewhere" / "x.wav")
    with pytest.raises(ValueError, match="prompt: must not be empty"):
        create_generation_with_file(clean_db_session, "  ", inside)
    with pytest.raises(ValueError, match=r"file_path: .* does not exist"):
        create_generation_with_file(clean_db_session, "p", output_dir / "missing.wav")
    with pytest.raises(ValueError, match=r"file_path: .* not under the outputs directory"):
        create_generation_with_file(clean_db_session, "p", outside)
    with pytest.raises(ValueError, match="status: only completed"):
        create_generation_with_file(clean_db_session, "p", inside, GenerationStatus.PENDING)
    assert rows(clean_db_session) == 0
