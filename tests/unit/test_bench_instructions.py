"""The instruction-count benchmarks' plumbing (benchmarks/instructions.py): the counted run
itself takes about a minute under callgrind, so it runs in the asv suite (``make bench-check``
counts every stage once), not here."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import instructions
from benchmarks.bench_instructions import InstructionCounts


def test_every_stage_has_a_figure_and_every_figure_a_stage() -> None:
    figures = {name.removeprefix("track_") for name in vars(InstructionCounts)}
    assert set(instructions.STAGES) <= figures
    tracked = {name for name in vars(InstructionCounts) if name.startswith("track_")}
    assert {name.removeprefix("track_") for name in tracked} == set(instructions.STAGES)


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
        instructions.count(Path("/nonexistent"))


def test_a_dump_total_is_read_and_an_empty_dump_counts_zero(tmp_path: Path) -> None:
    dump = tmp_path / "callgrind.out.1"
    dump.write_text("version: 1\ncreator: callgrind-3.19.0\nevents: Ir\nsummary: 42\ntotals: 41\n")
    assert instructions._total(dump) == 41
    dump.write_text("version: 1\nevents: Ir\n")
    assert instructions._total(dump) == 0
