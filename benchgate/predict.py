"""What the noise table predicts: how often the gate fails identical code.

    python -m benchgate.predict docs/benchmarking-trials.md --runs 4 \
        --section "noise table, 2026-12-03"

Each timed benchmark's process-to-process spread (the noise table's ``spread``: the largest over
the smallest run median among N identical runs) is read as a log-normal process effect whose
standard deviation is ln(spread) over the expected range of N standard normal draws. A gate run
on identical code is then simulated benchmark by benchmark, with the gate's own rules:

- the first pass: two rounds per commit, each a process with its own effect; flagged when the
  ratio of the commits' medians reaches :data:`benchgate.gate.DEFAULT_FACTOR` (asv's
  significance test is left out, so this over-counts flags), or, for a benchmark an instruction
  count covers, :data:`benchgate.gate.COVERED_FACTOR`;
- the confirmation: its rounds (:mod:`benchgate.rounds`) judged by :class:`rounds.Judged`.

The two passes run in separate processes, so a benchmark fails identical code with probability
P(flagged) x P(confirmed), and a whole-suite run with 1 - prod(1 - p). Deterministic figures
(memory, instruction counts) are not simulated: identical code reads them the same.
"""

from __future__ import annotations

import argparse
import math
import random
import re
import statistics
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from benchgate import gate, rounds
from benchmarks.instructions import STAGES

#: Expected range (max - min) of N draws of a standard normal, for N = 2..8.
EXPECTED_RANGE = {2: 1.128, 3: 1.693, 4: 2.059, 5: 2.326, 6: 2.534, 7: 2.704, 8: 2.847}
#: Rounds per commit in the gate's first pass (asv's default for the suite's benchmarks).
FIRST_PASS_ROUNDS = 2


@dataclass(frozen=True)
class Prediction:
    name: str
    sigma: float
    flagged: float
    confirmed: float

    @property
    def fails(self) -> float:
        return self.flagged * self.confirmed


def sigma(spread: float, runs: int) -> float:
    """The process effect's standard deviation (log scale) that a spread over ``runs`` runs
    suggests."""
    return math.log(spread) / EXPECTED_RANGE[runs] if spread > 1 else 0.0


def _effect(draw: random.Random, sd: float, processes: int) -> float:
    return statistics.median(draw.lognormvariate(0.0, sd) for _ in range(processes))


def confirmed_share(
    draw: random.Random, sd: float, count: int, trials: int, slowdown: float = 1.0
) -> float:
    """How often the round rule (:class:`rounds.Judged`, :data:`gate.CONFIRM_FACTOR`) calls a
    benchmark slower when each of ``count`` rounds per commit has a log-normal process effect of
    ``sd`` and head is ``slowdown`` times slower."""
    slower = 0
    for _ in range(trials):
        base = tuple(draw.lognormvariate(0.0, sd) for _ in range(count))
        head = tuple(slowdown * draw.lognormvariate(0.0, sd) for _ in range(count))
        slower += rounds.Judged("b", base, head, gate.CONFIRM_FACTOR).slower
    return slower / trials


def predict(
    name: str,
    spread: float,
    runs: int,
    *,
    seconds: float = 0.0,
    covered: bool = False,
    trials: int = 20_000,
    seed: int = 0,
) -> Prediction:
    """How often the gate flags and then confirms benchmark ``name`` on identical code."""
    draw = random.Random(f"{seed}:{name}")
    sd = sigma(spread, runs)
    factor = gate.COVERED_FACTOR if covered else gate.DEFAULT_FACTOR
    count = rounds.LONG_ROUNDS if seconds >= rounds.LONG_CALL_S else rounds.ROUNDS
    flagged = sum(
        _effect(draw, sd, FIRST_PASS_ROUNDS) / _effect(draw, sd, FIRST_PASS_ROUNDS) >= factor
        for _ in range(trials)
    )
    return Prediction(name, sd, flagged / trials, confirmed_share(draw, sd, count, trials))


def suite(
    rows: Iterable[tuple[str, float, float]], runs: int, counted: Iterable[str] = ()
) -> list[Prediction]:
    """Each timed benchmark of ``rows`` ((name, median seconds, spread) from the noise table)
    predicted; ``counted`` are the stages with instruction counts (none without valgrind)."""
    counted = set(counted)
    return [
        predict(name, spread, runs, seconds=median, covered=bool(gate.covering(name, counted)))
        for name, median, spread in rows
        if ".time_" in name
    ]


def whole_run(predictions: Iterable[Prediction]) -> float:
    """The probability that a whole-suite gate run fails identical code."""
    return 1.0 - math.prod(1.0 - p.fails for p in predictions)


#: A row of a noise table as ``benchgate noise --markdown`` prints it: name, median, spread, iqr,
#: false alarm at, safe factor.
NOISE_ROW = re.compile(
    r"^\|\s*(?P<name>bench_[^|]+?)\s*\|\s*(?P<median>[\d.e+-]+)\s*\|\s*(?P<spread>[\d.]+)\s*\|"
    r"[^|]*\|[^|]*\|[^|]*\|\s*$"
)


def rows_from_markdown(text: str, section: str = "") -> list[tuple[str, float, float]]:
    """(name, median, spread) of every noise-table row in ``text``, or only in the section whose
    heading holds ``section`` (up to the next heading)."""
    if section:
        parts = re.split(r"^(#+ .*)$", text, flags=re.M)
        at = next(
            (i for i, part in enumerate(parts) if part.startswith("#") and section in part), None
        )
        text = parts[at + 1] if at is not None and at + 1 < len(parts) else ""
    rows = (NOISE_ROW.match(line.strip()) for line in text.splitlines())
    return [(row["name"], float(row["median"]), float(row["spread"])) for row in rows if row]


def report(predictions: list[Prediction], counted: bool) -> str:
    """The prediction in words: the suite's rate, five clean runs' chance, the worst cases."""
    rate = whole_run(predictions)
    worst = sorted(predictions, key=lambda p: p.fails, reverse=True)[:5]
    lines = [
        f"predicted false alarms on identical code ({len(predictions)} timed benchmarks, "
        f"{'with' if counted else 'without'} instruction counts): {rate:.1%} of whole-suite gate "
        f"runs; five runs all pass with probability {(1 - rate) ** 5:.0%}",
        *(
            f"  {p.fails:.2%}  {p.name}  (flagged {p.flagged:.1%}, confirmed {p.confirmed:.2%})"
            for p in worst
            if p.fails > 0
        ),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchgate.predict", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("table", type=Path, help="a markdown file holding a noise table")
    parser.add_argument("--runs", type=int, required=True, help="identical runs behind it")
    parser.add_argument("--section", default="", help="only the section whose heading holds this")
    args = parser.parse_args(argv)
    if args.runs not in EXPECTED_RANGE:
        parser.error(f"--runs: {args.runs}; between 2 and 8")
    rows = rows_from_markdown(args.table.read_text(), args.section)
    if not rows:
        parser.error(f"{args.table}: no noise-table row")
    for counted in (set(), set(STAGES)):
        print(report(suite(rows, args.runs, counted), bool(counted)), end="\n\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
