"""The regression gate's reading of asv's comparison (``python -m benchgate compare``).

The gate re-measures what asv's first pass flags as slower and fails only on a slowdown that
shows in both passes; these tests pin how it reads asv's table and selects benchmarks again.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from benchgate import gate
from benchgate.check import check_results
from benchgate.results import format_figure
from benchgate.rounds import Judged
from benchmarks.instructions import STAGES

COUNT = "bench_instructions.InstructionCounts.track_{}"


@pytest.fixture(scope="module")
def bench():
    return gate


#: The end of an ``asv continuous --split`` run, as asv 0.6 prints it.
ASV_TABLE = """
| Change   | Before [3ce2e0d2] <main>   | After [cdbf83f1] <trial/identical>   |   Ratio | Benchmark (Parameter)                                              |
|----------|----------------------------|--------------------------------------|---------|--------------------------------------------------------------------|
| +        | 7.34±0.9ms                 | 13.4±2ms                             |    1.83 | bench_export.WriteWav.time_write_atomic(16.0)                      |
| +        | 206±20μs                   | 301±20μs                             |    1.46 | bench_database.HistoryQueries.time_status_lookup('sqlite', 100000) |
| -        | 5.59±1ms                   | 3.06±0.3ms                           |    0.55 | bench_api.ApiRequests.time_get_status                              |
| !        | 1.00±0.1s                  | failed                               |     n/a | bench_pipeline.PipelineJob.time_one_job('tiny')                    |
|          | 2.46±0.2ms                 | ~3.59±0.1ms                          |   ~1.46 | bench_export.WriteWav.time_write_atomic(4.0)                       |

SOME BENCHMARKS HAVE CHANGED SIGNIFICANTLY.
PERFORMANCE DECREASED.
"""  # noqa: E501


def test_flagged_reads_slower_and_failing_rows_only(bench):
    assert bench.flagged(ASV_TABLE, "+") == [
        "bench_database.HistoryQueries.time_status_lookup('sqlite', 100000)",
        "bench_export.WriteWav.time_write_atomic(16.0)",
    ]
    assert bench.flagged(ASV_TABLE, "!") == ["bench_pipeline.PipelineJob.time_one_job('tiny')"]
    assert bench.flagged("BENCHMARKS NOT SIGNIFICANTLY CHANGED.", "+") == []


def test_exact_selects_one_parameter_combination(bench):
    """asv matches ``--bench`` against ``name(param, ...)``: the pattern must take the flagged
    combination and none of its neighbours."""
    flagged = "bench_database.HistoryQueries.time_status_lookup('sqlite', 100000)"
    pattern = bench.exact(flagged)
    assert re.search(pattern, flagged)
    assert not re.search(pattern, flagged.replace("sqlite", "postgresql"))
    assert not re.search(pattern, flagged.replace("100000", "1000000"))
    assert not re.search(
        bench.exact("bench_export.WriteWav.time_write_atomic(4.0)"),
        "bench_export.WriteWav.time_write_atomic(14.0)",
    )


def _table(*rows: tuple[str, ...]) -> str:
    """An asv comparison table with the given (mark, benchmark[, ratio]) rows."""
    lines = ["| Change | Before [aaaaaaaa] | After [bbbbbbbb] | Ratio | Benchmark (Parameter) |"]
    for mark, name, *ratio in rows:
        lines.append(
            f"| {mark} | 1.00 | {ratio[0] if ratio else '1.50'} | "
            f"{ratio[0] if ratio else '1.50'} | {name} |"
        )
    return "\n".join(lines) + "\n"


EXPORT_16 = "bench_export.ExportWav.time_export(16.0)"
LOOKUP = "bench_database.HistoryQueries.time_status_lookup('sqlite', 100000)"


class Confirmations:
    """Stands in for the confirmation pass: records what it is asked, answers in turn."""

    def __init__(self, *answers: tuple[int, str, dict]) -> None:
        self.answers = list(answers)
        self.calls: list[list[str]] = []

    def __call__(self, names):
        self.calls.append(list(names))
        return self.answers.pop(0)


def _rounds(name: str, base: tuple[float, ...], head: tuple[float, ...]) -> Judged:
    return Judged(name, base, head, gate.CONFIRM_FACTOR)


def test_confirmation_fails_only_on_what_is_slower_round_by_round(bench):
    first = _table(("+", EXPORT_16), ("+", LOOKUP))
    slowed = _rounds(
        EXPORT_16, (1.0, 1.02, 0.98, 1.0, 1.01, 1.0), (1.24, 1.27, 1.22, 1.25, 1.3, 1.2)
    )
    wobbly = _rounds(LOOKUP, (1.0, 1.3, 1.0, 1.3, 1.0, 1.0), (1.2, 1.0, 1.2, 1.0, 1.2, 1.2))
    again = Confirmations((1, _table(("+", EXPORT_16)), {EXPORT_16: slowed, LOOKUP: wobbly}))
    assert bench.confirm_slower(1, first, again, no_confirm=False) == 1
    assert again.calls == [[LOOKUP, EXPORT_16]]

    # asv's pooled test would call the lookup slower (1.2 in four rounds of six): two rounds the
    # other way are enough for the round rule to call it noise.
    noise = Confirmations((1, _table(("+", LOOKUP)), {EXPORT_16: None, LOOKUP: wobbly}))
    assert bench.confirm_slower(1, first, noise, no_confirm=False) == 0


def test_a_figure_without_rounds_falls_back_to_asvs_verdict(bench):
    error = "bench_export.LoudnessNormalise.track_loudness_error(16.0)"
    first = _table(("+", error))
    again = Confirmations((1, _table(("+", error)), {error: None}))
    assert bench.confirm_slower(1, first, again, no_confirm=False) == 1
    gone = Confirmations((0, "BENCHMARKS NOT SIGNIFICANTLY CHANGED.", {error: None}))
    assert bench.confirm_slower(1, first, gone, no_confirm=False) == 0


def test_confirmation_is_skipped_for_failures_and_on_request(bench):
    never = Confirmations()
    broken = _table(("+", EXPORT_16), ("!", LOOKUP))
    assert bench.confirm_slower(1, broken, never, no_confirm=False) == 1
    assert bench.confirm_slower(1, _table(("+", EXPORT_16)), never, no_confirm=True) == 1
    assert bench.confirm_slower(0, "", never, no_confirm=False) == 0
    assert never.calls == []


def test_deterministic_figures_are_never_sent_to_the_confirmation(bench):
    # Memory and instruction counts read the same in a second run: grown() judges them, once.
    count = "bench_instructions.InstructionCounts.track_normalise"
    peak = "bench_export.ExportWav.track_export_peak_mib(16.0)"
    never = Confirmations()
    assert bench.confirm_slower(1, _table(("+", count), ("+", peak)), never, no_confirm=False) == 0
    assert never.calls == []
    again = Confirmations((1, _table(("+", EXPORT_16)), {EXPORT_16: None}))
    assert bench.confirm_slower(1, _table(("+", count), ("+", EXPORT_16)), again, False) == 1
    assert again.calls == [[EXPORT_16]]
    # A first pass that failed without a table is still a failure.
    assert bench.confirm_slower(1, "asv: error", never, no_confirm=False) == 1


def test_marked_reads_each_rows_ratio(bench):
    assert bench.marked(ASV_TABLE, "+") == {
        "bench_export.WriteWav.time_write_atomic(16.0)": 1.83,
        "bench_database.HistoryQueries.time_status_lookup('sqlite', 100000)": 1.46,
    }
    failing = bench.marked(ASV_TABLE, "!")
    assert list(failing) == ["bench_pipeline.PipelineJob.time_one_job('tiny')"]
    assert math.isnan(failing["bench_pipeline.PipelineJob.time_one_job('tiny')"])


def test_a_covered_benchmark_is_left_to_its_count_below_the_wide_factor(bench):
    """The SQLite lookup's whole work is counted: a first-pass 1.46x is the count's to judge
    (grown()), not the clock's; with the count missing (no valgrind), or at 1.5x and more, the
    lookup is confirmed like any timed benchmark. Export is not covered (it writes a file)."""
    counted = {"status_lookup", "normalise"}
    never = Confirmations()
    first = _table(("+", LOOKUP, "1.46"))
    assert bench.confirm_slower(1, first, never, False, counted=counted) == 0
    assert never.calls == []
    slowed = _rounds(LOOKUP, (1.0,) * 6, (1.3,) * 6)
    for counts, ratio in ((counted, "1.50"), ((), "1.46")):
        again = Confirmations((1, _table(("+", LOOKUP)), {LOOKUP: slowed}))
        assert bench.confirm_slower(1, _table(("+", LOOKUP, ratio)), again, False, counted=counts)
        assert again.calls == [[LOOKUP]]
    export = Confirmations((1, _table(("+", EXPORT_16)), {EXPORT_16: None}))
    assert bench.confirm_slower(1, _table(("+", EXPORT_16, "1.2")), export, False, counted=counted)
    assert export.calls == [[EXPORT_16]]


def test_what_each_count_covers(bench):
    stages = set(STAGES)
    assert bench.covering(LOOKUP, stages) == COUNT.format("status_lookup")
    assert bench.covering(LOOKUP.replace("sqlite", "postgresql"), stages) is None
    assert bench.covering(LOOKUP, stages - {"status_lookup"}) is None
    assert bench.covering("bench_export.LoudnessNormalise.time_normalise(16.0)", stages) == (
        COUNT.format("normalise")
    )
    assert bench.covering("bench_metadata.AnalyzeClip.time_analyze(30.0)", stages) == (
        COUNT.format("analyze")
    )
    assert bench.covering("bench_api.ApiRouteHandlers.time_read_generation", stages) == (
        COUNT.format("read_generation")
    )
    assert bench.covering(EXPORT_16, stages) == COUNT.format("export")
    for uncovered in (
        "bench_api.ApiRequests.time_get_status",
        "bench_export.WriteWav.time_write_atomic(4.0)",
        "bench_database.HistoryQueries.time_list_pending('sqlite', 100000)",
    ):
        assert bench.covering(uncovered, stages) is None, uncovered


def test_counted_stages_are_those_both_commits_counted(bench, tmp_path: Path):
    import json

    machine = tmp_path / "results" / "box"
    machine.mkdir(parents=True)
    config = tmp_path / "asv.conf.json"
    config.write_text(json.dumps({"results_dir": "results"}))

    def record(commit: str, figures: dict[str, float | None]) -> None:
        results = {COUNT.format(stage): [[value], []] for stage, value in figures.items()}
        document = {"result_columns": ["result", "params"], "results": results}
        (machine / f"{commit[:8]}-env.json").write_text(json.dumps(document))

    record("a" * 40, {"normalise": 10.0, "analyze": 20.0, "synth": None})
    record("b" * 40, {"normalise": 11.0, "analyze": None, "synth": 30.0})
    assert bench.counted_stages(config, "box", ("a" * 40, "b" * 40)) == {"normalise"}
    assert bench.counted_stages(config, "box", ("c" * 40, "b" * 40)) == set()


def test_instruction_counts_are_judged_at_their_own_factor(bench, monkeypatch):
    seen = []

    def fake_asv_output(*args, config, env):
        seen.append(args)
        return 0, _table(
            ("+", "bench_instructions.InstructionCounts.track_status_lookup"),
            ("+", "bench_export.ExportWav.track_export_peak_mib(16.0)"),
            ("+", EXPORT_16),
        )

    monkeypatch.setattr(bench, "asv_output", fake_asv_output)
    found = bench.grown("m", Path("c.json"), {}, "a", "b", bench.COUNT_TRACK, bench.COUNT_FACTOR)
    assert found == ["bench_instructions.InstructionCounts.track_status_lookup"]
    assert str(bench.COUNT_FACTOR) in seen[0] and bench.COUNT_FACTOR < bench.DEFAULT_FACTOR
    assert bench.COUNT_TRACK.search(
        "bench_instructions.PostgresInstructionCounts.track_list_newest"
    )


def test_memory_check_judges_stage_peaks_only(bench, monkeypatch):
    """A stage-memory figure that grew fails the gate at the memory factor; other ``track_``
    figures (loudness error, tempo error) and timings are not its business."""
    seen = []

    def fake_asv_output(*args, config, env):
        seen.append(args)
        return 0, _table(
            ("+", "bench_export.ExportWav.track_export_peak_mib(16.0)"),
            ("+", "bench_generation.MusicgenGpuGenerate.track_nvml_peak_memory('small', 16.0)"),
            ("+", "bench_export.LoudnessNormalise.track_loudness_error(4.0)"),
            ("+", EXPORT_16),
            ("-", "bench_metadata.AnalyzeClip.track_analyze_peak_mib(4.0)"),
        )

    monkeypatch.setattr(bench, "asv_output", fake_asv_output)
    grown = bench.grown(
        "m", Path("asv.conf.json"), {}, "main", "HEAD", bench.MEMORY_TRACK, bench.MEMORY_FACTOR
    )
    assert grown == [
        "bench_export.ExportWav.track_export_peak_mib(16.0)",
        "bench_generation.MusicgenGpuGenerate.track_nvml_peak_memory('small', 16.0)",
    ]
    (args,) = seen
    assert args[0] == "compare" and args[-2:] == ("main", "HEAD")
    assert str(bench.MEMORY_FACTOR) in args


def test_a_drain_time_is_shown_as_jobs_per_minute(bench):
    # 8 jobs in 21 s: 22.9 jobs a minute; a skipped case stays n/a.
    assert format_figure(21.0, "jobs/min", 8.0) == "22.9 jobs/min"
    assert format_figure(None, "jobs/min", 8.0) == "n/a"


def test_cuda_and_slow_only_classes_may_be_na_in_the_quick_check(bench, tmp_path: Path):
    import json

    names = [
        "bench_pipeline.QueueBatchingGpu.time_drain_queue",
        "bench_generation.TwinLoopOverhead.track_loop_overhead_percent",
        "bench_pipeline.QueueBatching.time_drain_queue",
    ]
    columns = ["result", "params"]
    results = {name: [[None], [["'tiny'"]]] for name in names}
    (tmp_path / "abc-env.json").write_text(
        json.dumps({"result_columns": columns, "results": results})
    )
    problems = check_results(tmp_path, postgres=True)
    assert len(problems) == 1 and problems[0].startswith(
        "bench_pipeline.QueueBatching.time_drain_queue("
    )


def test_postgres_only_counts_may_be_na_only_without_a_server(tmp_path: Path):
    import json

    count = "bench_instructions.PostgresInstructionCounts.track_status_lookup"
    results = {count: [[None], []]}
    (tmp_path / "abc-env.json").write_text(
        json.dumps({"result_columns": ["result", "params"], "results": results})
    )
    assert check_results(tmp_path, postgres=False) == []
    assert check_results(tmp_path, postgres=True) == [f"{count} has no figure"]
