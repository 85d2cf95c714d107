"""The regression gate: both commits in one asv environment, rounds interleaved, a slowdown
confirmed by a second pass, memory judged at its own factor (docs/BENCHMARKING.md, "The gate")."""

from __future__ import annotations

import argparse
import re
import tempfile
from collections.abc import Callable, Collection, Sequence
from pathlib import Path

from benchgate import rounds
from benchgate.asvrun import asv_output, end_run, git, scratch_config, start
from benchgate.results import result_files
from benchgate.rounds import Judged
from benchmarks.instructions import STAGES

#: Factor of the gate's first pass: asv's own rule (ratio of medians and its Mann-Whitney test
#: on the pooled samples). Low, so that a 1.25x slowdown is flagged; what it flags in error is
#: cleared by the confirmation (docs/BENCHMARKING.md, "The gate").
DEFAULT_FACTOR = 1.1
#: Factor of the confirmation pass, judged on round medians (benchgate/rounds.py): the median of
#: the paired round ratios must reach it, with head slower in every round.
CONFIRM_FACTOR = 1.1
#: Factor of the gate's memory check. The stage-memory figures (``track_*peak*``, MiB) are
#: deterministic, identical runs agree to 1.001 (docs/benchmarking-trials.md, "The noise
#: table"), so they are judged tighter than time: one more copy of a 16 s clip's float64 audio
#: in export is 1.19x.
MEMORY_FACTOR = 1.1
#: The memory figures the memory check judges: every stage's own peak, host or device.
MEMORY_TRACK = re.compile(r"\.track_\w*peak")
#: Factor of the instruction counts of the pure-CPU stages (benchmarks/bench_instructions.py):
#: two runs of one commit agree within about 1 % whatever the runner's load, other environments
#: within 1.5 % (docs/benchmarking-trials.md), so they are judged tightest.
COUNT_FACTOR = 1.05
COUNT_TRACK = re.compile(r"InstructionCounts\.track_")
#: The count figure of a stage on SQLite, as asv names it.
COUNT_NAME = "bench_instructions.InstructionCounts.track_{stage}"
#: A timed benchmark whose whole work a count covers (``Stage.covers``) is left to that count
#: when the first pass reads it slower by less than this: the count is exact where the clock
#: wanders by up to 1.7x on a shared runner. Beyond it, the timed figure is confirmed as any
#: other: the count reads one fixed input (4 s of audio, 10,000 rows), so a cost that appears
#: only on a bigger one shows in time alone.
COVERED_FACTOR = 1.5
#: Figures that do not wander with the machine: judged once, on the first pass's results, each
#: family at its own factor, and never sent to the confirmation (a second run would read the
#: same): (what grew, the figures, the factor).
DETERMINISTIC = (
    ("memory", MEMORY_TRACK, MEMORY_FACTOR),
    ("instructions", COUNT_TRACK, COUNT_FACTOR),
)
#: A row of asv's comparison table: its mark (``+`` slower, ``!`` newly failing), the ratio
#: and the benchmark with its parameters, e.g. ``bench_export.ExportWav.time_export(16.0)``.
TABLE_ROW = re.compile(
    r"^\|\s*(?P<mark>[+!])\s*\|[^|]*\|[^|]*\|\s*~?(?P<ratio>[\d.]+|n/a)\s*\|"
    r"\s*(?P<name>bench_[^|]*?)\s*\|\s*$"
)


def marked(output: str, mark: str) -> dict[str, float]:
    """{benchmark (with parameters, as asv prints them): ratio} of the rows asv's table marks
    with ``mark``; the ratio is NaN where asv has none (a failure)."""
    rows = (TABLE_ROW.match(line.strip()) for line in output.splitlines())
    return {
        row["name"]: float("nan") if row["ratio"] == "n/a" else float(row["ratio"])
        for row in rows
        if row and row["mark"] == mark
    }


def flagged(output: str, mark: str) -> list[str]:
    """Benchmarks (with parameters, as asv prints them) that asv's table marks with ``mark``."""
    return sorted(marked(output, mark))


def covering(name: str, counted: Collection[str]) -> str | None:
    """The count (of the stages in ``counted``) that covers the timed benchmark ``name``, if
    any (``Stage.covers``, benchmarks/instructions.py)."""
    for stage in counted:
        covers = STAGES[stage].covers if stage in STAGES else ""
        if covers and re.search(covers, name):
            return COUNT_NAME.format(stage=stage)
    return None


def exact(benchmark: str) -> str:
    """An asv ``--bench`` regex that selects ``benchmark`` (with its parameters) alone."""
    return f"^{re.escape(benchmark)}$"


#: Runs ``asv continuous`` on the named benchmarks: (benchmarks, ``-a`` attributes, factor[,
#: configuration]) -> asv's exit status and output.
Continuous = Callable[..., tuple[int, str]]
#: Runs the confirmation of the named benchmarks; returns asv's exit status and output, and each
#: benchmark's round-by-round judgement (None where its rounds cannot be compared).
Confirm = Callable[[Sequence[str]], tuple[int, str, dict[str, Judged | None]]]


def confirm_slower(
    code: int,
    output: str,
    confirm: Confirm,
    no_confirm: bool,
    factor: float = CONFIRM_FACTOR,
    counted: Collection[str] = (),
) -> int:
    """The timing verdict: what the first pass (``code``, ``output``) calls slower must be slower
    again, round by round, in a confirmation pass of its own (benchgate/rounds.py), or it was
    noise. A benchmark without samples to split into rounds (a ``track_`` figure) is judged by
    asv's verdict in the confirmation pass at ``factor``. The figures of :data:`DETERMINISTIC`
    are left to :func:`grown`, and so is a timed benchmark that a count of ``counted`` (stages
    counted on both commits) covers, when the first pass reads it slower by less than
    :data:`COVERED_FACTOR`: with nothing else slower, the timing verdict is a pass."""
    everything = marked(output, "+")
    slower, left = [], {}
    for name, ratio in sorted(everything.items()):
        if any(pattern.search(name) for _, pattern, _ in DETERMINISTIC):
            continue
        count = covering(name, counted)
        if count and ratio < COVERED_FACTOR:
            left[name] = (ratio, count)
        else:
            slower.append(name)
    if code == 0 or not everything or flagged(output, "!") or no_confirm:
        return code
    if left:
        print(
            f"\ngate: {len(left)} benchmark(s) slower in the first pass by less than "
            f"{COVERED_FACTOR}x, left to the instruction count of their whole work:",
            *(f"x{ratio:.2f}  {name}  -> {count}" for name, (ratio, count) in left.items()),
            sep="\n  ",
            flush=True,
        )
    if not slower:
        return 0  # only figures that grown() judges
    print(
        f"\ngate: {len(slower)} benchmark(s) slower in the first pass; confirming them round by "
        f"round ({rounds.ROUNDS} rounds of {rounds.SAMPLES} samples per commit, "
        f"{rounds.LONG_ROUNDS} of one for calls over {rounds.LONG_CALL_S:g} s) at factor "
        f"{factor}:",
        *slower,
        sep="\n  ",
        flush=True,
    )
    code, output, judged = confirm(slower)
    by_asv = set(flagged(output, "+"))
    if code != 0 and not by_asv and not any(judged.values()):
        return code  # the confirmation pass itself failed
    confirmed = []
    print("\ngate: the confirmation, round by round (base -> head):", flush=True)
    for name in slower:
        verdict = judged.get(name)
        if verdict is not None:
            print("  " + verdict.row(), flush=True)
            if verdict.slower:
                confirmed.append(name)
        else:
            again = name in by_asv
            print(f"  {'SLOWER' if again else 'noise':6}  {name}  (no rounds: asv's verdict)")
            if again:
                confirmed.append(name)
    if confirmed:
        print("\ngate: FAILED, slower in both passes:", *confirmed, sep="\n  ", flush=True)
        return 1
    print("\ngate: passed; no slowdown of the first pass showed again (noise)", flush=True)
    return 0


def grown(
    machine: str,
    config: Path,
    env: dict[str, str],
    base: str,
    head: str,
    pattern: re.Pattern[str],
    factor: float,
) -> list[str]:
    """Figures matching ``pattern`` of ``head`` above ``base`` by more than ``factor``, read
    from the results the gate's first pass just recorded (``asv compare``, whose table shows
    both figures and the ratio)."""
    _, output = asv_output(
        "compare",
        "--machine",
        machine,
        "--factor",
        str(factor),
        "--split",
        "--only-changed",
        base,
        head,
        config=config,
        env=env,
    )
    return [name for name in flagged(output, "+") if pattern.search(name)]


def compare(args: argparse.Namespace) -> int:
    """The gate: both commits in the same asv environment, rounds interleaved between them; a
    slowdown must show in two passes (see docs/BENCHMARKING.md, "The gate")."""
    config = Path(args.config).resolve()
    started = start(args.machine, config)
    if started is None:
        return 1
    machine, token, env = started

    def continuous(
        benches: Sequence[str],
        attributes: Sequence[str],
        factor: float,
        run_config: Path = config,
    ) -> tuple[int, str]:
        return asv_output(
            "continuous",
            "--machine",
            machine,
            "--factor",
            str(factor),
            "--interleave-rounds",
            *[option for attribute in attributes for option in ("-a", attribute)],
            "--split",
            "--show-stderr",
            *[option for bench in benches for option in ("-b", bench)],
            *(["--cpu-affinity", args.cpu_affinity] if args.cpu_affinity else []),
            args.base,
            args.head,
            config=run_config,
            env=env,
        )

    base, head = git("rev-parse", args.base), git("rev-parse", args.head)

    def confirm(names: Sequence[str]) -> tuple[int, str, dict[str, Judged | None]]:
        return confirmation(names, continuous, config, machine, (base, head), args.confirm_factor)

    try:
        first = [f"rounds={args.rounds}"] if args.rounds else []
        code, output = continuous([args.bench] if args.bench else [], first, args.factor)
        counted = counted_stages(config, machine, (base, head))
        code = confirm_slower(code, output, confirm, args.no_confirm, args.confirm_factor, counted)
        for what, pattern, factor in DETERMINISTIC:
            names = grown(machine, config, env, args.base, args.head, pattern, factor)
            if names:
                print(
                    f"\ngate: FAILED, {what} grew by more than {factor}x:",
                    *names,
                    sep="\n  ",
                    flush=True,
                )
                code = 1
        return code
    finally:
        end_run(token)


def results_directory(config: Path) -> Path:
    """Where the configuration ``config`` keeps its results."""
    from asv.util import load_json

    results_dir = Path(load_json(str(config), js_comments=True)["results_dir"])
    return results_dir if results_dir.is_absolute() else config.parent / results_dir


def counted_stages(config: Path, machine: str, commits: Sequence[str]) -> set[str]:
    """The stages (benchmarks/instructions.py) whose SQLite count the recorded results hold for
    every one of ``commits``: where valgrind is missing, none."""
    found = []
    for commit in commits:
        figures: dict[str, tuple] = {}
        for path in result_files(results_directory(config), machine, commit):
            figures.update(rounds.cases(path))
        values = {
            stage: figures.get(COUNT_NAME.format(stage=stage), (None,))[0] for stage in STAGES
        }
        found.append({stage for stage, value in values.items() if _counts(value)})
    return set.intersection(*found) if found else set()


def _counts(value: object) -> bool:
    return isinstance(value, int | float) and value == value and value > 0


def confirmation(
    names: Sequence[str],
    continuous: Continuous,
    config: Path,
    machine: str,
    commits: tuple[str, str],
    factor: float = CONFIRM_FACTOR,
) -> tuple[int, str, dict[str, Judged | None]]:
    """Run ``names`` again in interleaved rounds with a fixed number of samples a round, into a
    scratch results directory, and judge each round by round. Calls the first pass timed at
    :data:`rounds.LONG_CALL_S` or more get fewer rounds of one sample."""
    base, head = commits
    first = {}
    for path in result_files(results_directory(config), machine, head):
        first.update(rounds.cases(path))
    long = [n for n in names if (first.get(n, (None, None))[0] or 0) >= rounds.LONG_CALL_S]
    groups = [
        ([n for n in names if n not in long], rounds.ROUNDS, rounds.SAMPLES),
        (long, rounds.LONG_ROUNDS, 1),
    ]
    code, outputs, judged = 0, [], {}
    for group, count, samples in groups:
        if not group:
            continue
        with tempfile.TemporaryDirectory(prefix="dgx-music-confirm-") as scratch:
            run_config = scratch_config(Path(scratch), base=config)
            status, output = continuous(
                [exact(name) for name in group],
                [f"rounds={count}", f"repeat={samples}"],
                factor,
                run_config,
            )
            code, outputs = max(code, status), [*outputs, output]
            found = Path(scratch) / "results"
            base_files = result_files(found, machine, base)
            head_files = result_files(found, machine, head)
            if base_files and head_files:
                judged.update(rounds.judge(group, base_files[0], head_files[0], count, factor))
    return code, "".join(outputs), judged
