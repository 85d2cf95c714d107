"""The instruction-count benchmarks' plumbing (benchmarks/instructions.py): the counted run
itself takes about a minute under callgrind, so it runs in the asv suite (``make bench-check``
counts every stage once), not here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from benchmarks import instructions
from benchmarks.bench_instructions import InstructionCounts, PostgresInstructionCounts


def _figures(benchmark: type) -> set[str]:
    return {name.removeprefix("track_") for name in vars(benchmark) if name.startswith("track_")}


def test_every_stage_has_a_figure_and_every_figure_a_stage() -> None:
    assert _figures(InstructionCounts) == set(instructions.STAGES)
    # On PostgreSQL only the stages that read the history, none of the audio ones.
    assert _figures(PostgresInstructionCounts) == set(instructions.DATABASE_STAGES)
    assert set(instructions.DATABASE_STAGES) < set(instructions.STAGES)


def test_a_stage_covers_only_timed_benchmarks_of_its_own_work() -> None:
    """What ``covers`` names is left to the count by the gate: it must name time_ benchmarks,
    and never a PostgreSQL case (the server's time is not counted), a whole request or the
    file write alone (the kernel's work is not counted)."""
    for name, stage in instructions.STAGES.items():
        if not stage.covers:
            continue
        assert re.search(stage.covers, "bench_x.Y.time_z") is None
        assert ".time_" in stage.covers, name
        for outside in (
            "bench_database.HistoryQueries.time_status_lookup('postgresql', 100000)",
            "bench_api.ApiRequests.time_get_status",
            "bench_export.WriteWav.time_write_atomic(16.0)",
        ):
            assert not re.search(stage.covers, outside), (name, outside)


def test_a_figure_reads_its_stage_and_a_missing_count_skips_with_the_reason() -> None:
    counts = {stage: 1_000 + index for index, stage in enumerate(instructions.STAGES)}
    bench = InstructionCounts()
    bench.setup(counts)
    assert bench.track_synth(counts) == counts["synth"]
    with pytest.raises(NotImplementedError, match="valgrind is not installed"):
        bench.setup({"unavailable": "valgrind is not installed"})


def test_without_valgrind_counting_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(instructions.Unavailable, match="valgrind"):
        instructions.count("sqlite:////nonexistent/dgx_music.db")


def test_a_dump_total_is_read_and_an_empty_dump_counts_zero(tmp_path: Path) -> None:
    dump = tmp_path / "callgrind.out.1"
    dump.write_text("version: 1\ncreator: callgrind-3.19.0\nevents: Ir\nsummary: 42\ntotals: 41\n")
    assert instructions._total(dump) == 41
    dump.write_text("version: 1\nevents: Ir\n")
    assert instructions._total(dump) == 0
