"""The regression gate: both commits in one asv environment, rounds interleaved, a slowdown
confirmed by a second pass, memory judged at its own factor (docs/BENCHMARKING.md, "The gate")."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Sequence
from pathlib import Path

from benchgate.asvrun import asv_output, end_run, start

#: Regression factor of the gate on a shared 2-core runner (see docs/BENCHMARKING.md, "The gate").
DEFAULT_FACTOR = 1.4
#: Rounds per commit in the gate's confirmation pass (the first pass runs each benchmark's own).
CONFIRM_ROUNDS = 4
#: Factor of the confirmation pass: the slowdown must show again, at least this large and
#: significant by asv's test. On the 2-core EPYC runner the first pass's false alarms came back
#: at 0.75-1.01 and an injected 1.5x export slowdown at 1.26 and 1.35
#: (docs/benchmarking-trials.md).
CONFIRM_FACTOR = 1.2
#: Factor of the gate's memory check. The stage-memory figures (``track_*peak*``, MiB) are
#: deterministic, identical runs agree to 1.001 (docs/BENCHMARKING.md, "Noise"), so they are
#: judged tighter than time: one more copy of a 16 s clip's float64 audio in export is 1.19x.
MEMORY_FACTOR = 1.1
#: The memory figures the memory check judges: every stage's own peak, host or device.
MEMORY_TRACK = re.compile(r"\.track_\w*peak")
#: A row of asv's comparison table: its mark (``+`` slower, ``!`` newly failing) and the
#: benchmark with its parameters, e.g. ``bench_export.ExportWav.time_export(16.0)``.
TABLE_ROW = re.compile(r"^\|\s*(?P<mark>[+!])\s*\|.*\|\s*(?P<name>bench_[^|]*?)\s*\|\s*$")


def flagged(output: str, mark: str) -> list[str]:
    """Benchmarks (with parameters, as asv prints them) that asv's table marks with ``mark``."""
    rows = (TABLE_ROW.match(line.strip()) for line in output.splitlines())
    return sorted({row["name"] for row in rows if row and row["mark"] == mark})


def exact(benchmark: str) -> str:
    """An asv ``--bench`` regex that selects ``benchmark`` (with its parameters) alone."""
    return f"^{re.escape(benchmark)}$"


Continuous = Callable[[Sequence[str], int | None, float], tuple[int, str]]


def confirm_slower(code: int, output: str, continuous: Continuous, no_confirm: bool) -> int:
    """The timing verdict: what the first pass (``code``, ``output``) calls slower must show
    again in a second pass of its own, or it was noise."""
    slower = flagged(output, "+")
    if code == 0 or not slower or flagged(output, "!") or no_confirm:
        return code
    print(
        f"\ngate: {len(slower)} benchmark(s) slower in the first pass; confirming them "
        f"with {CONFIRM_ROUNDS} interleaved rounds per commit at factor {CONFIRM_FACTOR}:",
        *slower,
        sep="\n  ",
        flush=True,
    )
    code, output = continuous([exact(name) for name in slower], CONFIRM_ROUNDS, CONFIRM_FACTOR)
    again = flagged(output, "+")
    if code != 0 and not again:
        return code  # the confirmation pass itself failed
    confirmed = sorted(set(again) & set(slower))
    if confirmed:
        print("\ngate: FAILED, slower in both passes:", *confirmed, sep="\n  ", flush=True)
        return 1
    print("\ngate: passed; no slowdown of the first pass showed again (noise)", flush=True)
    return 0


def memory_grown(
    machine: str, config: Path, env: dict[str, str], base: str, head: str
) -> list[str]:
    """Stage-memory figures of ``head`` above ``base`` by more than :data:`MEMORY_FACTOR`, read
    from the results the gate's first pass just recorded (``asv compare``)."""
    _, output = asv_output(
        "compare",
        "--machine",
        machine,
        "--factor",
        str(MEMORY_FACTOR),
        "--split",
        "--only-changed",
        base,
        head,
        config=config,
        env=env,
    )
    return [name for name in flagged(output, "+") if MEMORY_TRACK.search(name)]


def compare(args: argparse.Namespace) -> int:
    """The gate: both commits in the same asv environment, rounds interleaved between them; a
    slowdown must show in two passes (see docs/BENCHMARKING.md, "The gate")."""
    config = Path(args.config).resolve()
    started = start(args.machine, config)
    if started is None:
        return 1
    machine, token, env = started

    def continuous(benches: Sequence[str], rounds: int | None, factor: float) -> tuple[int, str]:
        return asv_output(
            "continuous",
            "--machine",
            machine,
            "--factor",
            str(factor),
            "--interleave-rounds",
            *(["-a", f"rounds={rounds}"] if rounds else []),
            "--split",
            "--show-stderr",
            *[option for bench in benches for option in ("-b", bench)],
            *(["--cpu-affinity", args.cpu_affinity] if args.cpu_affinity else []),
            args.base,
            args.head,
            config=config,
            env=env,
        )

    try:
        code, output = continuous([args.bench] if args.bench else [], args.rounds, args.factor)
        code = confirm_slower(code, output, continuous, args.no_confirm)
        grown = memory_grown(machine, config, env, args.base, args.head)
        if grown:
            print(
                f"\ngate: FAILED, memory grew by more than {MEMORY_FACTOR}x:",
                *grown,
                sep="\n  ",
                flush=True,
            )
            return 1
        return code
    finally:
        end_run(token)
