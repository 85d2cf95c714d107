"""CI's guard of the suite: asv check, then every benchmark once (quick), with and without
PostgreSQL; every benchmark must have a figure, except the cases that cannot run here."""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from benchgate.asvrun import asv, end_run, git, run_env, scratch_config
from benchgate.results import load_results
from benchmarks.instructions import DATABASE_STAGES
from benchmarks.postgres import pg_url


def check() -> int:
    """asv check, then every benchmark once (quick) with and without PostgreSQL."""
    if asv("check", "--python=same") != 0:
        return 1
    if asv("machine", "--yes", "--machine", "bench-check") != 0:
        return 1
    failures = []
    for postgres in (True, False):
        if postgres and not pg_url():
            failures.append("no PostgreSQL server: the PostgreSQL pass cannot run")
            continue
        token, env = run_env()
        if not postgres:
            env["DGX_MUSIC_BENCH_PG_URL"] = "off"
        with tempfile.TemporaryDirectory(prefix="dgx-music-bench-check-") as scratch:
            config = scratch_config(Path(scratch))
            try:
                status = asv(
                    "run",
                    "--python=same",
                    "--quick",
                    "--show-stderr",
                    "--machine",
                    "bench-check",
                    "--set-commit-hash",
                    git("rev-parse", "HEAD"),
                    config=config,
                    env=env,
                )
            finally:
                end_run(token)
            problems = check_results(Path(scratch) / "results", postgres=postgres)
        label = "with PostgreSQL" if postgres else "without PostgreSQL"
        if status != 0:
            problems.insert(0, f"asv run exited {status}")
        failures += [f"{label}: {problem}" for problem in problems]
        print(f"bench-check {label}: {'ok' if not problems else 'FAILED'}", flush=True)
    for failure in failures:
        print(f"bench-check: {failure}", file=sys.stderr)
    return 1 if failures else 0


#: Benchmarks a CPU run without slow mode leaves n/a by design: CUDA cases, the loop-overhead
#: ratio of the twins (too noisy for the gate) and the long tracks' time and batching (minutes).
NOT_IN_QUICK_CPU_RUN = (
    "MusicgenGpuGenerate",
    "QueueBatchingGpu",
    "BatchIdentityGpu",
    "TwinLoopOverhead",
    "TinyLongform",
    "LongShortBatching",
)


#: Benchmarks that run on PostgreSQL alone (no backend parameter): n/a without a server.
POSTGRES_ONLY = tuple(
    f"bench_instructions.PostgresInstructionCounts.track_{stage}" for stage in DATABASE_STAGES
)


def check_results(results_dir: Path, *, postgres: bool) -> list[str]:
    """Every benchmark has a figure, except :data:`NOT_IN_QUICK_CPU_RUN`, PostgreSQL cases
    (and :data:`POSTGRES_ONLY`) when ``postgres`` is false and the instruction counts where
    valgrind is missing."""
    files = [
        p for p in results_dir.rglob("*.json") if p.name not in ("machine.json", "benchmarks.json")
    ]
    if len(files) != 1:
        return [f"expected one result file, found {len(files)}"]
    problems = []
    for name, by_params in load_results(files[0]).items():
        for params, value in by_params.items():
            if value is not None and value == value:
                continue
            if any(part in name for part in NOT_IN_QUICK_CPU_RUN):
                continue
            if not postgres and ("'postgresql'" in params or name in POSTGRES_ONLY):
                continue
            if "InstructionCounts" in name and shutil.which("valgrind") is None:
                continue  # skipped for want of valgrind, with the reason (.ci/run installs it)
            problems.append(f"{name}{params or ''} has no figure")
    return problems
