"""``python -m benchgate <command>``: see :mod:`benchgate` for the commands."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import benchgate
from benchgate import check, gate, noise, results, site
from benchgate.asvrun import DEFAULT_CONFIG, HTML_DIR, asv, default_machine, end_run, git, start
from benchmarks import postgres


def run(args: argparse.Namespace) -> int:
    """Record the suite for HEAD, publish the site, print the headline table."""
    config = Path(args.config).resolve()
    started = start(args.machine, config)
    if started is None:
        return 1
    machine, token, env = started
    commit = git("rev-parse", "HEAD")
    run_args = ["run", "--machine", machine, "--show-stderr", f"{commit}^!"]
    if args.quick:
        run_args.append("--quick")
    try:
        status = asv(*run_args, config=config, env=env)
    finally:
        end_run(token)
    if site.publish(config) != 0:
        return 1
    results.summary(machine, commit)
    print(
        f"\nsite: {HTML_DIR / 'index.html'}  (python -m http.server -d {HTML_DIR} --bind 127.0.0.1)"
    )
    if status != 0:
        print(f"asv run exited {status}: a benchmark failed (skipped cases are n/a, not failures)")
    return status


def cleanup() -> int:
    for name in postgres.drop_bench_databases(None):
        print(f"dropped {name}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["noise"]:  # its own options: see benchgate.noise
        return noise.main(argv[1:])
    parser = argparse.ArgumentParser(
        prog="python -m benchgate", description=(benchgate.__doc__ or "").split("\n\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    machine_default = os.environ.get("BENCH_MACHINE") or None

    recording = commands.add_parser("run", help="record the suite for HEAD, publish, summarise")
    recording.add_argument("--machine", default=machine_default)
    recording.add_argument("--config", default=str(DEFAULT_CONFIG))
    recording.add_argument("--quick", action="store_true", help="one sample per benchmark")

    commands.add_parser("publish", help="rebuild the offline site from results/")

    summary = commands.add_parser("summary", help="headline figures of a recorded commit")
    summary.add_argument("--machine", default=machine_default)
    summary.add_argument("--commit", default="HEAD")

    compare = commands.add_parser("compare", help="the regression gate between two commits")
    compare.add_argument("base")
    compare.add_argument("head")
    compare.add_argument("--factor", type=float, default=gate.DEFAULT_FACTOR)
    compare.add_argument(
        "--rounds",
        type=int,
        help="rounds per commit for every benchmark (default: each benchmark's own, 2 for time_)",
    )
    compare.add_argument(
        "--confirm-factor",
        type=float,
        default=gate.CONFIRM_FACTOR,
        help="median round ratio the confirmation must reach (1.05 on a quiet DGX)",
    )
    compare.add_argument("--bench", help="only benchmarks matching this regex")
    compare.add_argument(
        "--no-confirm",
        action="store_true",
        help="fail on the first pass's slowdowns without re-measuring them",
    )
    compare.add_argument(
        "--cpu-affinity",
        default=os.environ.get("BENCH_CPU") or None,
        help="pin the benchmarks to these cores (asv's format: 1 or 0,1 or 0-3)",
    )
    compare.add_argument("--machine", default=machine_default)
    compare.add_argument("--config", default=str(DEFAULT_CONFIG))

    commands.add_parser("check", help="asv check + a quick pass with and without PostgreSQL")
    commands.add_parser("noise", help="how noisy each benchmark is here (own options)")
    commands.add_parser("cleanup", help="drop leftover dgx_music_bench_* databases")

    args = parser.parse_args(argv)
    if args.command == "run":
        return run(args)
    if args.command == "publish":
        return site.publish()
    if args.command == "summary":
        return results.summary(args.machine or default_machine(), git("rev-parse", args.commit))
    if args.command == "compare":
        return gate.compare(args)
    if args.command == "check":
        return check.check()
    return cleanup()


if __name__ == "__main__":
    sys.exit(main())
