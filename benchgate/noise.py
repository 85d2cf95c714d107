"""How noisy is each benchmark on this machine? Run the suite several times on the same commit
and report, per benchmark, what the gate would say about identical code.

    python -m benchgate noise [--runs 3] [--bench REGEX] [--machine NAME] [--markdown]
    python -m benchgate noise --from-results DIR [DIR ...]    # reuse earlier runs

Each run records the whole suite (or the benchmarks matching --bench) for HEAD in the asv-managed
environment, with raw samples, into a scratch results directory (results/ is not touched). Then
every pair of runs is compared the way ``asv continuous`` compares two commits (the ratio of
medians, and asv's own significance test on the samples), and the table shows:

- ``median``: the median of the run medians;
- ``spread``: largest / smallest run median (1.00 = identical runs agree exactly);
- ``iqr``: the typical interquartile range of one run's samples, relative to its median;
- ``false alarm at``: the factors (1.1, 1.2, 1.3, 1.5) at which asv would have flagged some pair
  of identical runs as a change;
- ``safe factor``: the smallest factor at which no pair is flagged.

docs/BENCHMARKING.md shows this table; the gate's factor is chosen from it.
"""

from __future__ import annotations

import argparse
import itertools
import shutil
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from benchgate.asvrun import ROOT, asv, default_machine, end_run, git, run_env, scratch_config
from benchgate.results import case_name

#: Factors the table reports false alarms at.
FACTORS = (1.1, 1.2, 1.3, 1.5)


@dataclass
class Run:
    """One benchmark case in one run: its median, asv's stats and the raw samples."""

    value: float
    stats: dict
    samples: list[float] | None


def record_runs(runs: int, machine: str, bench_regex: str | None, keep: Path) -> list[Path]:
    """Run the suite ``runs`` times on HEAD; return one results directory per run."""
    commit = git("rev-parse", "HEAD")
    directories = []
    for index in range(runs):
        results = keep / f"run{index + 1}"
        config = scratch_config(keep / f"conf{index + 1}", results_dir=results)
        token, env = run_env()
        args = ["run", "--machine", machine, "--record-samples", f"{commit}^!"]
        if bench_regex:
            args += ["-b", bench_regex]
        try:
            status = asv(*args, config=config, env=env)
        finally:
            end_run(token)
        if status not in (0, 2):
            raise SystemExit(f"asv run exited {status}")
        directories.append(results)
    return directories


def load_cases(directory: Path) -> dict[str, Run]:
    """{"benchmark(params)": Run} from the one result file under ``directory``."""
    from asv.results import Results

    files = [
        p for p in directory.rglob("*.json") if p.name not in ("machine.json", "benchmarks.json")
    ]
    if len(files) != 1:
        raise SystemExit(f"{directory}: expected one result file, found {len(files)}")
    result = Results.load(str(files[0]))
    cases = {}
    for key in result.get_result_keys(_benchmarks(directory)):
        values = result.get_result_value(key, result.get_result_params(key))
        stats = result.get_result_stats(key, result.get_result_params(key))
        samples = result.get_result_samples(key, result.get_result_params(key))
        combos = list(itertools.product(*result.get_result_params(key))) or [()]
        for index, combo in enumerate(combos):
            value = values[index]
            if value is None or value != value:
                continue  # skipped (n/a) or failed
            name = case_name(key, combo)
            cases[name] = Run(value, stats[index] or {}, samples[index] if samples else None)
    return cases


def _benchmarks(directory: Path) -> dict:
    import json

    listing = directory / "benchmarks.json"
    source = listing if listing.exists() else ROOT / "results" / "benchmarks.json"
    return json.loads(source.read_text())


@dataclass
class Noise:
    name: str
    median: float
    spread: float
    iqr: float | None
    flagged_at: list[float]
    safe_factor: float


def flagged(a: Run, b: Run, factor: float) -> bool:
    """Would asv continuous call b a change from a (either way) at ``factor``?"""
    from asv.commands.compare import _is_result_better

    a_ss = (a.stats, a.samples)
    b_ss = (b.stats, b.samples)
    return _is_result_better(b.value, a.value, b_ss, a_ss, factor) or _is_result_better(
        a.value, b.value, a_ss, b_ss, factor
    )


def measure(directories: list[Path]) -> list[Noise]:
    runs = [load_cases(directory) for directory in directories]
    names = sorted(set.intersection(*(set(cases) for cases in runs)))
    table = []
    for name in names:
        cases = [cases[name] for cases in runs]
        values = [case.value for case in cases]
        iqrs = [
            (case.stats.get("q_75") - case.stats.get("q_25")) / case.value
            for case in cases
            if case.stats.get("q_75") is not None and case.value
        ]
        flagged_at = [
            factor
            for factor in FACTORS
            if any(flagged(a, b, factor) for a, b in itertools.combinations(cases, 2))
        ]
        # The smallest factor with no flagged pair: the largest ratio among pairs asv's test
        # calls different (pairs it calls the same never fire, whatever the factor).
        unsafe = [
            max(a.value, b.value) / min(a.value, b.value)
            for a, b in itertools.combinations(cases, 2)
            if min(a.value, b.value) > 0 and flagged(a, b, 1.0 + 1e-9)
        ]
        table.append(
            Noise(
                name=name,
                median=statistics.median(values),
                spread=max(values) / min(values) if min(values) > 0 else float("inf"),
                iqr=statistics.median(iqrs) if iqrs else None,
                flagged_at=flagged_at,
                safe_factor=max(unsafe, default=1.0),
            )
        )
    return table


def render(table: list[Noise], runs: int, markdown: bool) -> str:
    header = ["benchmark", "median", "spread", "iqr", "false alarm at", "safe factor"]
    rows = [
        [
            row.name,
            f"{row.median:.4g}",
            f"{row.spread:.3f}",
            f"{row.iqr * 100:.1f} %" if row.iqr is not None else "-",
            ", ".join(f"{factor:g}" for factor in row.flagged_at) or "never",
            f"{row.safe_factor:.3f}",
        ]
        for row in table
    ]
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
    else:
        columns = zip(header, *rows, strict=True)
        widths = [max(len(cell) for cell in column) for column in columns]
        lines = [
            "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True))
            for line in [header, *rows]
        ]
    worst = max(table, key=lambda row: row.safe_factor, default=None)
    if worst:
        lines.append(
            f"\n{len(table)} cases, {runs} identical runs; the noisiest needs a factor of "
            f"{worst.safe_factor:.3f} ({worst.name})."
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchgate noise", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--bench", help="only benchmarks matching this regex")
    parser.add_argument("--machine", default=None)
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--keep", type=Path, help="keep the runs' results in this directory")
    parser.add_argument("--from-results", type=Path, nargs="+", help="analyse earlier runs")
    args = parser.parse_args(argv)
    if args.runs < 2:
        parser.error(f"--runs: {args.runs}; at least 2 runs are needed to compare")
    if args.from_results:
        directories = args.from_results
    else:
        keep = args.keep or Path(tempfile.mkdtemp(prefix="dgx-music-noise-"))
        machine = args.machine or default_machine()
        if asv("machine", "--yes", "--machine", machine) != 0:
            return 1
        directories = record_runs(args.runs, machine, args.bench, keep)
        print(f"runs kept in {keep}")
    table = measure(directories)
    if not table:
        print("no benchmark has a figure in every run", file=sys.stderr)
        return 1
    print(render(table, len(directories), args.markdown))
    if not args.keep and not args.from_results:
        shutil.rmtree(directories[0].parent, ignore_errors=True)
    return 0
