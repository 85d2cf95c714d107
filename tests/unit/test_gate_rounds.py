"""The confirmation's round-by-round rule (benchgate/rounds.py): how rounds are read from asv's
result files, and what the rule calls slower under the noise the runners show."""

from __future__ import annotations

import json
import random
from pathlib import Path

from benchgate import rounds
from benchgate.gate import CONFIRM_FACTOR
from benchgate.predict import confirmed_share
from benchgate.rounds import Judged

LOOKUP = "bench_database.HistoryQueries.time_status_lookup"


def _result_file(path: Path, samples: list[float], other: list[float]) -> Path:
    """An asv result file with one two-case parametrised benchmark and one plain one."""
    columns = ["result", "params", "version", "samples"]
    path.write_text(
        json.dumps(
            {
                "result_columns": columns,
                "results": {
                    LOOKUP: [
                        [1.0, 2.0],
                        [["'sqlite'", "'postgresql'"], ["100000"]],
                        "v",
                        [samples, other],
                    ],
                    "bench_metadata.AnalyzeClip.track_analyze_peak_mib": [[46.9], [], "v", None],
                },
            }
        )
    )
    return path


def test_cases_are_named_as_asvs_tables_print_them(tmp_path: Path):
    found = rounds.cases(_result_file(tmp_path / "r.json", [1.0, 2.0], [3.0]))
    assert found == {
        f"{LOOKUP}('sqlite', 100000)": (1.0, [1.0, 2.0]),
        f"{LOOKUP}('postgresql', 100000)": (2.0, [3.0]),
        "bench_metadata.AnalyzeClip.track_analyze_peak_mib": (46.9, None),
    }


def test_samples_split_into_rounds_in_the_order_asv_appended_them():
    assert rounds.round_medians([1, 2, 3, 10, 20, 30], 2) == (2, 20)
    assert rounds.round_medians([1, 2, 3, 4, 5], 2) is None  # a round short: not comparable
    assert rounds.round_medians(None, 2) is None


def test_judge_pairs_the_rounds_of_both_commits(tmp_path: Path):
    base = _result_file(tmp_path / "base.json", [1.0, 1.1, 0.9, 1.0, 1.0, 1.0], [2.0])
    head = _result_file(tmp_path / "head.json", [1.3, 1.2, 1.25, 1.3, 1.3, 1.3], [2.0, 2.0])
    sqlite, postgres = f"{LOOKUP}('sqlite', 100000)", f"{LOOKUP}('postgresql', 100000)"
    judged = rounds.judge([sqlite, postgres], base, head, 2, 1.1)
    assert judged[sqlite] == Judged(sqlite, (1.0, 1.0), (1.25, 1.3), 1.1)
    assert judged[sqlite].slower and judged[sqlite].ratios == (1.25, 1.3)
    assert judged[postgres] is None  # one sample cannot make two rounds


def _verdicts(slowdown: float, spread: float, trials: int, seed: int) -> float:
    """How often the rule calls a benchmark slower when each round's median wanders by
    ``spread`` (a log-normal process effect) and head is ``slowdown`` times slower."""
    return confirmed_share(random.Random(seed), spread, rounds.ROUNDS, trials, slowdown)


def test_the_rule_is_quiet_on_identical_code_and_catches_a_quarter_more():
    # 6 % is the process-to-process spread of the noisiest in-process cases on the 2-core
    # runners (six processes' medians 1.05-1.16x apart, trials log "Rounds, not samples").
    assert _verdicts(1.0, 0.06, 4000, seed=1) < 0.01
    assert _verdicts(1.25, 0.06, 4000, seed=2) > 0.995
    # A 1.25x busy loop in one function of a longer request shows as less: at 1.15 most are
    # still caught, and nearly all at the quieter cases' 3 %.
    assert _verdicts(1.15, 0.06, 4000, seed=3) > 0.8
    assert _verdicts(1.15, 0.03, 4000, seed=4) > 0.97


def test_one_round_the_other_way_clears_a_benchmark():
    def judged(*head: float) -> Judged:
        return Judged("b", (1.0,) * len(head), head, CONFIRM_FACTOR)

    assert judged(1.3, 1.3, 0.99, 1.3, 1.3, 1.3).slower  # one of six may go the other way
    two_against = judged(1.3, 1.3, 0.99, 1.3, 0.98, 1.3)
    assert two_against.slower_rounds == 4 and two_against.ratio == 1.3
    assert not two_against.slower
    assert "slower in 4 of 6 rounds, 5 needed" in two_against.rule
    assert not judged(1.3, 0.99, 1.3).slower  # three long rounds must all agree
    assert not judged(1.05, 1.06, 1.04, 1.05, 1.05, 1.06).slower  # agreed, but under the factor


def test_the_confirmation_runs_long_calls_in_fewer_rounds_and_judges_each(tmp_path: Path):
    """``gate.confirmation`` with asv stood in for: what it asks asv for, and how it reads the
    results asv leaves in its scratch directory."""
    from benchgate import gate

    base, head = "a" * 40, "b" * 40
    fast, slow = f"{LOOKUP}('sqlite', 100000)", f"{LOOKUP}('postgresql', 100000)"
    # The first pass's results: the PostgreSQL case took 2 s a call (a long call), SQLite 1 ms.
    first = tmp_path / "results" / "m"
    first.mkdir(parents=True)
    _figures(first / f"{head[:8]}-env.json", [1e-3, 2.0], [None, None])
    config = tmp_path / "asv.conf.json"
    config.write_text(json.dumps({"results_dir": "results", "env_dir": "env", "repo": "."}))

    asked = []

    def continuous(benches, attributes, factor, run_config):
        asked.append((list(benches), list(attributes), factor))
        count = int(attributes[0].split("=")[1])
        per = int(attributes[1].split("=")[1])
        results = run_config.parent / "results" / "m"
        results.mkdir(parents=True, exist_ok=True)
        sqlite_head = 1.3 if any("sqlite" in b for b in benches) else None
        for commit, scale in ((base, 1.0), (head, sqlite_head or 1.0)):
            samples = [scale * (1 + 0.01 * i) for i in range(count * per)]
            _figures(results / f"{commit[:8]}-env.json", [1.0, 1.0], [samples, samples])
        return 1, ""

    code, _, judged = gate.confirmation([fast, slow], continuous, config, "m", (base, head), 1.1)
    assert asked == [
        ([gate.exact(fast)], [f"rounds={rounds.ROUNDS}", f"repeat={rounds.SAMPLES}"], 1.1),
        ([gate.exact(slow)], [f"rounds={rounds.LONG_ROUNDS}", "repeat=1"], 1.1),
    ]
    assert judged[fast] is not None and judged[fast].slower
    assert len(judged[fast].base) == rounds.ROUNDS
    assert judged[slow] is not None and not judged[slow].slower
    assert len(judged[slow].base) == rounds.LONG_ROUNDS
    assert code == 1


def _figures(path: Path, values: list, samples: list) -> None:
    path.write_text(
        json.dumps(
            {
                "result_columns": ["result", "params", "samples"],
                "results": {LOOKUP: [values, [["'sqlite'", "'postgresql'"], ["100000"]], samples]},
            }
        )
    )
