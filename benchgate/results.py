"""Reading asv's result files, and the headline table (rows in ``benchmarks/headline.json``)."""

from __future__ import annotations

import itertools
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchgate.asvrun import ROOT

#: The headline rows, declared beside the benchmarks they read.
HEADLINE_FILE = ROOT / "benchmarks" / "headline.json"


@dataclass(frozen=True)
class Headline:
    """One row of the summary: a benchmark, the parameter values to show, how to print it."""

    label: str
    benchmark: str
    params: tuple[str, ...]
    unit: str  # "ms", "s", "MiB", "x" (ratio), "%", "jobs/min" (divide = jobs in the figure)
    divide: float = 1.0


def headlines(path: Path = HEADLINE_FILE) -> list[Headline]:
    """The rows of the headline table, in order."""
    rows = json.loads(path.read_text())["rows"]
    return [
        Headline(
            label=row["label"],
            benchmark=row["benchmark"],
            params=tuple(row["params"]),
            unit=row["unit"],
            divide=float(row.get("divide", 1.0)),
        )
        for row in rows
    ]


def result_files(results_dir: Path, machine: str, commit: str) -> list[Path]:
    return sorted((results_dir / machine).glob(f"{commit[:8]}-*.json"))


def load_results(path: Path, column: str = "result") -> dict[str, dict[tuple[str, ...], Any]]:
    """{benchmark: {parameter values: figure}} from one asv result file; with ``column``, that
    per-case column instead of the figure (``"samples"``: each case's raw samples, or None)."""
    data = json.loads(path.read_text())
    columns = data["result_columns"]
    figures: dict[str, dict[tuple[str, ...], Any]] = {}
    for name, row in data["results"].items():
        entry = dict(zip(columns, row, strict=False))
        params: Sequence[Sequence[str]] = entry.get("params") or []
        combos = list(itertools.product(*params)) if params else [()]
        values = entry.get(column) or []
        figures[name] = dict(zip(combos, values, strict=False))
    return figures


def case_name(benchmark: str, combo: Sequence[str]) -> str:
    """A benchmark case as asv's tables print it: ``name(param, ...)``."""
    return benchmark + (f"({', '.join(combo)})" if combo else "")


def format_figure(value: float | None, unit: str, divide: float) -> str:
    if value is None or value != value:  # None or NaN: skipped or not run
        return "n/a"
    if unit == "jobs/min":  # a time for ``divide`` jobs, shown as a rate
        return f"{60 * divide / value:.3g} jobs/min"
    value /= divide
    if unit == "ms":
        return f"{value * 1e3:.3g} ms"
    if unit in ("s", "MiB"):
        return f"{value:.3g} {unit}"
    if unit == "x":
        return f"{value:.3g}"
    return f"{value:.3g} {unit}"


def summary(machine: str, commit: str, results_dir: Path = ROOT / "results") -> int:
    """Print the headline table of a recorded commit; 1 when it has no results."""
    files = result_files(results_dir, machine, commit)
    if not files:
        print(
            f"no results for {commit[:8]} on machine {machine!r} in {results_dir}", file=sys.stderr
        )
        return 1
    from rich.console import Console
    from rich.table import Table

    rows = headlines()
    for path in files:
        figures = load_results(path)
        table = Table(title=f"{machine} · {commit[:8]} · {path.stem.split('-', 1)[1]}")
        table.add_column("what")
        table.add_column("figure", justify="right")
        table.add_column("benchmark")
        for row in rows:
            value = figures.get(row.benchmark, {}).get(row.params)
            shown = row.benchmark.split(".", 1)[1] + (
                f"({', '.join(row.params)})" if row.params else ""
            )
            table.add_row(row.label, format_figure(value, row.unit, row.divide), shown)
        Console().print(table)
    return 0
