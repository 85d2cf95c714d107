"""The confirmation's rule: a slowdown is judged round by round, not sample by sample.

On the 2-core runners one benchmark process differs from the next far more than the samples
within a process do: the status lookup's samples spread 4-7 % (interquartile range over the
median) inside a process, while six processes' medians spread 1.05-1.16x (CPU time spreads
exactly as much as wall time there, so the processes themselves differ, not the load beside
them; docs/benchmarking-trials.md, "Rounds, not samples"). asv's Mann-Whitney test pools the
samples of a commit's two rounds as if they were independent, so two processes that happen to
differ by 10-30 % read as a significant change, and an honest 1.25x can hide behind them.

So the confirmation runs each flagged benchmark in several interleaved rounds per commit with a
fixed number of samples a round (asv appends a round's samples to the last round's, in order),
takes each round's median, pairs the rounds that ran side by side (asv alternates the commits'
order from round to round), and calls the benchmark slower only when

- the median of the paired ratios (head over base) reaches the factor, and
- head was slower than base in all pairs but at most one (all, with fewer than six rounds).

For identical code each pair goes either way with even odds, so five of six pairs agree with
probability 7/64 before the factor is even asked; a real 1.25x moves every round by about as
much, far past the 2-6 % a round's median wanders. Simulated with the runners' process spread
(tests/unit/test_gate_rounds.py): 0.5 % of identical benchmarks confirmed at the worst spread,
a 1.25x confirmed 999 times in 1,000, a 1.15x 85 times in 100.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

from benchgate.results import case_name, load_results

#: Samples per round in the confirmation (asv's ``repeat``), for benchmarks whose call takes
#: under :data:`LONG_CALL_S`; their median resists one disturbed sample.
SAMPLES = 3
#: Rounds per commit for those benchmarks.
ROUNDS = 6
#: Rounds (of :data:`ROUNDS`) that may go the other way in a slowdown the rule still confirms:
#: one, so that a single disturbed round cannot hide a real 1.25x. With fewer rounds (the long
#: calls) none may.
ROUNDS_AGAINST = 1
#: A call at least this long (seconds, by the first pass) gets :data:`LONG_ROUNDS` rounds of one
#: sample: five rounds of three samples of a 50 s twin would take 25 minutes.
LONG_CALL_S = 1.0
LONG_ROUNDS = 3


@dataclass(frozen=True)
class Judged:
    """One benchmark case in the confirmation: per-round medians and what they say."""

    name: str
    base: tuple[float, ...]
    head: tuple[float, ...]
    factor: float

    @property
    def ratios(self) -> tuple[float, ...]:
        """head / base per pair of rounds that ran side by side."""
        return tuple(h / b for b, h in zip(self.base, self.head, strict=True) if b > 0)

    @property
    def ratio(self) -> float:
        return statistics.median(self.ratios) if self.ratios else float("nan")

    @property
    def slower_rounds(self) -> int:
        return sum(r > 1.0 for r in self.ratios)

    @property
    def needed(self) -> int:
        """Rounds that must show head slower."""
        count = len(self.ratios)
        return count - ROUNDS_AGAINST if count >= ROUNDS else count

    @property
    def slower(self) -> bool:
        return bool(self.ratios) and self.slower_rounds >= self.needed and self.ratio >= self.factor

    @property
    def rule(self) -> str:
        """Why it is (or is not) called slower, in words."""
        if not self.ratios:
            return "no rounds to compare"
        every = f"slower in {self.slower_rounds} of {len(self.ratios)} rounds, {self.needed} needed"
        reached = ">=" if self.ratio >= self.factor else "<"
        size = f"median round ratio {self.ratio:.2f} {reached} {self.factor}"
        return f"{every}, {size}"

    def row(self) -> str:
        base, head = statistics.median(self.base), statistics.median(self.head)
        verdict = "SLOWER" if self.slower else "noise"
        return (
            f"{verdict:6}  {_seconds(base):>10} -> {_seconds(head):>10}  x{self.ratio:.2f}  "
            f"{self.name}  ({self.rule})"
        )


def _seconds(value: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if value >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value * 1e9:.3g} ns"


def round_medians(samples: list[float] | None, rounds: int) -> tuple[float, ...] | None:
    """The median of each round's samples, when the samples split into ``rounds`` equal runs
    (asv appends each round's to the last); None when they do not (a round failed)."""
    if not samples or rounds <= 0 or len(samples) % rounds:
        return None
    size = len(samples) // rounds
    return tuple(statistics.median(samples[i * size : (i + 1) * size]) for i in range(rounds))


def cases(result_file: Path) -> dict[str, tuple[float | None, list[float] | None]]:
    """{"benchmark(params)": (figure, samples)} from one asv result file, named as asv's tables
    print them."""
    figures, samples = load_results(result_file), load_results(result_file, "samples")
    return {
        case_name(name, combo): (value, samples[name].get(combo))
        for name, by_combo in figures.items()
        for combo, value in by_combo.items()
    }


def judge(
    names: list[str],
    base_file: Path,
    head_file: Path,
    rounds: int,
    factor: float,
) -> dict[str, Judged | None]:
    """Each of ``names`` judged from the confirmation's two result files; None where its samples
    do not split into ``rounds`` rounds on both sides (the caller falls back to asv's verdict)."""
    base, head = cases(base_file), cases(head_file)
    judged: dict[str, Judged | None] = {}
    for name in names:
        b = round_medians(base.get(name, (None, None))[1], rounds)
        h = round_medians(head.get(name, (None, None))[1], rounds)
        judged[name] = Judged(name, b, h, factor) if b and h else None
    return judged
