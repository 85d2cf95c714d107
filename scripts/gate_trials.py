"""The gate's trials: does ``make bench-compare`` catch a 1.25x slowdown, and pass identical code?

    python scripts/gate_trials.py [--base main] [--trials identical,export,analyze,...]
                                  [--factor 1.25] [--seed N] [--keep-branches]

Each trial is a branch made from BASE by one commit:

- ``identical``: no change to the code (an empty commit);
- ``export``, ``analyze``, ``lookup``, ``api``: a busy loop of ``factor - 1`` times the call's own
  time, measured at run time, after every call of ``LoudnessNormalizer.process``, ``analyze``,
  ``JobManager.get`` (the status lookup, SQLite and PostgreSQL) or the API's status route;
- ``random``: the same in one stage drawn at random from :data:`RANDOM_STAGES`, the suite's
  other timed stages (``--seed`` fixes the draw).

A busy loop, not a sleep: a real regression spends its time on the CPU, where the runner's
other work competes with it. Then the gate runs (``python -m benchgate compare BASE <branch>``),
and the script prints one row per trial: the change, its wall time, the exit status, what the
first pass flagged, and what the confirmation said. A slowdown counts as caught only when the
gate fails naming one of the site's own benchmarks (:attr:`Site.expect`). The branches are
deleted afterwards unless ``--keep-branches``. Run it on a quiet machine: each trial is a
whole-suite gate run.
"""

from __future__ import annotations

import argparse
import random
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "src/dgx_music"


@dataclass(frozen=True)
class Site:
    """Where a slowdown goes: a function (``owner`` is its class, or None) in ``path``."""

    label: str
    path: str
    function: str
    owner: str | None = None
    #: Benchmarks the gate should name, as regexes over asv's names: one of them at least.
    expect: tuple[str, ...] = ()
    #: Where the site runs on two backends: one of these too (PostgreSQL's), else a miss.
    also: tuple[str, ...] = ()


SITES = {
    "export": Site(
        "export (LoudnessNormalizer.process)",
        "audio/export.py",
        "process",
        "LoudnessNormalizer",
        ("LoudnessNormalise.time_normalise", "ExportWav.time_export", "track_normalise"),
    ),
    "analyze": Site(
        "analysis (analyze)",
        "audio/metadata.py",
        "analyze",
        None,
        ("AnalyzeClip.time_analyze", "InstructionCounts.track_analyze"),
    ),
    "lookup": Site(
        "status lookup (JobManager.get)",
        "jobs/queue.py",
        "get",
        "JobManager",
        (
            r"HistoryQueries.time_status_lookup\('sqlite'",
            r"^bench_instructions\.InstructionCounts\.",
        ),
        (r"time_status_lookup\('postgresql'", r"PostgresInstructionCounts.track_status_lookup"),
    ),
    "api": Site(
        "API status route",
        "api/routes/generations.py",
        "read_generation",
        None,
        (
            "ApiRouteHandlers.time_read_generation",
            "InstructionCounts.track_read_generation",
            "ApiServerLoop.time_get_status",
            "ApiRequests.time_get_status",
        ),
    ),
}

#: The suite's other timed stages, one of which a ``random`` trial slows.
RANDOM_STAGES = [
    Site("synth generation", "generation/synth.py", "generate", "SynthBackend",
         ("SynthGenerate.time_generate", "track_synth")),
    Site("WAV encoding", "audio/export.py", "encode_wav", None,
         ("WriteWav.time_write_atomic", "ExportWav.time_export", "track_encode_wav")),
    Site("history page", "jobs/queue.py", "list", "JobManager",
         ("HistoryQueries.time_list_newest", "HistoryQueries.time_list_pending",
          "track_list_newest")),
    Site("counts by status", "jobs/queue.py", "counts_by_status", "JobManager",
         ("HistoryQueries.time_counts_by_status", "track_counts_by_status")),
    Site("claim", "jobs/queue.py", "claim", "JobManager", ("ClaimComplete.time_claim_complete",)),
    Site("submit", "jobs/queue.py", "submit", "JobManager", ("ApiServerLoop.time_submit",)),
    Site("tiny generation (MusicEngine.generate)", "generation/engine.py", "generate",
         "MusicEngine", ("TinyMusicgenGenerate.time_generate",)),
]  # fmt: skip

#: The decorator a trial commit adds to the package (``dgx_music/_gate_trial.py``).
SLOWDOWN_MODULE = '''"""Gate trial only: a busy loop of FRACTION times each call's own time."""

import functools
import inspect
import time

FRACTION = {fraction!r}


def _spin(seconds):
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        pass


def slowed(function):
    if inspect.iscoroutinefunction(function):

        @functools.wraps(function)
        async def slow_async(*args, **kwargs):
            started = time.perf_counter()
            result = await function(*args, **kwargs)
            _spin(FRACTION * (time.perf_counter() - started))
            return result

        return slow_async

    @functools.wraps(function)
    def slow(*args, **kwargs):
        started = time.perf_counter()
        result = function(*args, **kwargs)
        _spin(FRACTION * (time.perf_counter() - started))
        return result

    return slow
'''


def git(*args: str, cwd: Path = ROOT) -> str:
    return subprocess.check_output(["git", *args], cwd=cwd, text=True).strip()


def inject(worktree: Path, site: Site, factor: float) -> None:
    """Put ``@slowed`` on the site's ``def`` (below its other decorators, so a route is
    registered slowed) and add the decorator's module."""
    package = worktree / PACKAGE
    (package / "_gate_trial.py").write_text(SLOWDOWN_MODULE.format(fraction=factor - 1.0))
    path = package / site.path
    lines = path.read_text().splitlines(keepends=True)
    start = 0
    if site.owner:
        start = next(i for i, line in enumerate(lines) if line.startswith(f"class {site.owner}"))
    pattern = re.compile(rf"^(\s*)(async\s+)?def {re.escape(site.function)}\(")
    index = next(i for i in range(start, len(lines)) if pattern.match(lines[i]))
    indent = pattern.match(lines[index]).group(1)  # type: ignore[union-attr]
    lines.insert(index, f"{indent}@__import__('dgx_music._gate_trial')._gate_trial.slowed\n")
    path.write_text("".join(lines))


def make_branch(base: str, name: str, site: Site | None, factor: float) -> str:
    """A branch ``trial/<name>`` one commit after ``base``; returns the commit."""
    branch = f"trial/{name}"
    worktree = ROOT / ".asv" / "trial-worktree"
    subprocess.run(["git", "worktree", "remove", "--force", str(worktree)], cwd=ROOT,
                   capture_output=True)  # fmt: skip
    git("worktree", "add", "--force", "-B", branch, str(worktree), base)
    try:
        if site is None:
            git("commit", "--allow-empty", "-qm", "gate trial: nothing changed", cwd=worktree)
        else:
            inject(worktree, site, factor)
            git("add", "-A", cwd=worktree)
            message = f"gate trial: {site.label} {factor}x (busy loop)"
            git("commit", "-qm", message, cwd=worktree)
        return git("rev-parse", "HEAD", cwd=worktree)
    finally:
        git("worktree", "remove", "--force", str(worktree))


#: A row of the confirmation's round-by-round table (benchgate/gate.py, ``Judged.row``).
ROUND_ROW = re.compile(
    r"^\s+(?:SLOWER|noise)\s+.*?x(?P<ratio>[\d.]+)\s+(?P<name>bench_.+?)\s+"
    r"\(slower in (?P<slower>\d+) of (?P<rounds>\d+) rounds",
    re.M,
)
#: A first-pass flag the gate left to an instruction count: "  x1.37  <benchmark>  -> <count>".
LEFT_ROW = re.compile(r"^  x(?P<ratio>[\d.]+)\s+(?P<name>bench_.+?)\s+-> ", re.M)
#: A row asv's table marks slower: its ratio and the benchmark with its parameters.
FLAG = re.compile(
    r"^\|\s*\+\s*\|[^|]*\|[^|]*\|\s*~?(?P<ratio>[\d.]+)\s*\|\s*(?P<name>bench_[^|]*?)\s*\|"
)


#: The gate's failing verdicts: (the rule, the heading it prints above what it names).
FAILED_RULES = (
    ("slower in both passes", "slower in both passes:"),
    ("memory", "memory grew by"),
    ("instructions", "instructions grew by"),
)


@dataclass
class Outcome:
    label: str
    seconds: float
    code: int
    first: list[str]
    confirmed: list[str]
    verdict: str
    #: The slowed site's benchmarks (regexes); empty for an identical-code trial.
    expect: tuple[str, ...] = ()
    #: The confirmation's reading of each benchmark: "name x1.23 6/6".
    rounds: tuple[str, ...] = ()
    #: The site's PostgreSQL benchmarks (:attr:`Site.also`), where the run had a server.
    also: tuple[str, ...] = ()

    @property
    def missed(self) -> bool:
        """A slowdown the gate passed, or failed without naming a benchmark of its site (on
        each backend, for a site that runs on both)."""
        groups = [group for group in (self.expect, self.also) if group]
        return any(
            not any(re.search(p, name) for p in group for name in self.confirmed)
            for group in groups
        )


def run_gate(base: str, head: str, label: str, site: Site | None, bench: str | None) -> Outcome:
    started = time.monotonic()
    process = subprocess.run(
        [sys.executable, "-m", "benchgate", "compare", base, head]
        + (["--bench", bench] if bench else []),
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    seconds = time.monotonic() - started
    output = process.stdout + process.stderr
    (ROOT / ".asv" / f"trial-{head[:8]}.log").write_text(output)
    return read_outcome(label, seconds, process.returncode, output, site)


def read_outcome(
    label: str, seconds: float, code: int, output: str, site: Site | None = None
) -> Outcome:
    """What a gate run's output says: the first pass's slower rows (before the confirmation or
    the memory check's own table, which uses another factor), and the verdict."""
    first_pass = re.split(r"\ngate: |\n\$ asv compare ", output, maxsplit=1)[0]
    rest = output[len(first_pass) :]
    rows = (FLAG.match(line) for line in first_pass.splitlines())
    first = sorted({f"{row['name']} {row['ratio']}" for row in rows if row})
    confirmed: list[str] = []
    rules = []
    for rule, heading in FAILED_RULES:
        if heading in rest:
            listed = rest.split(heading)[-1]
            confirmed += re.findall(r"^  (bench_.*?)\s*$", listed.split("\n\n")[0], re.M)
            rules.append(rule)
    if rules:
        verdict = "failed: " + " + ".join(rules)
    elif "showed again (noise)" in output:
        verdict = "passed: first-pass flags did not come back"
    else:
        verdict = "passed" if code == 0 else f"exit {code}"
    readings = tuple(
        f"{row['name']} x{row['ratio']} {row['slower']}/{row['rounds']}"
        for row in ROUND_ROW.finditer(rest)
    ) + tuple(f"{row['name']} x{row['ratio']} left to its count" for row in LEFT_ROW.finditer(rest))
    expect = site.expect if site else ()
    also = site.also if site and "PostgreSQL: none" not in output else ()
    return Outcome(label, seconds, code, first, confirmed, verdict, expect, readings, also)


def table(outcomes: list[Outcome]) -> str:
    """The trials as a markdown table; a slowdown the gate did not name reads as a miss."""
    rows = [
        "| trial | change | wall | exit | first pass: slower | confirmation |",
        "|---|---|---|---|---|---|",
    ]
    for index, outcome in enumerate(outcomes, 1):
        minutes, seconds = divmod(round(outcome.seconds), 60)
        rows.append(
            f"| {index} | {outcome.label} | {minutes} m {seconds:02d} s | {outcome.code} | "
            f"{', '.join(outcome.first) or 'none'} | {outcome.verdict}"
            + (": **a miss**" if outcome.missed else "")
            + (f": {', '.join(outcome.confirmed)}" if outcome.confirmed else "")
            + (f" (rounds: {'; '.join(outcome.rounds)})" if outcome.rounds else "")
            + " |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--base", default="main")
    parser.add_argument("--trials", default="identical,export,analyze,lookup,api,random")
    parser.add_argument("--factor", type=float, default=1.25)
    parser.add_argument("--seed", type=int, default=None, help="fixes the random stage's draw")
    parser.add_argument("--keep-branches", action="store_true")
    parser.add_argument(
        "--bench",
        help="gate only the benchmarks matching this regex (a quick trial of the slowed site; "
        "the issue's trials run the whole suite)",
    )
    parser.add_argument("--repeat", type=int, default=1, help="run each trial this many times")
    args = parser.parse_args(argv)
    if args.factor <= 1.0:
        parser.error(f"--factor: {args.factor}; a slowdown must be over 1")
    kinds = [kind.strip() for kind in args.trials.split(",") if kind.strip()]
    unknown = sorted(set(kinds) - {"identical", "random", *SITES})
    if unknown:
        parser.error(f"--trials: unknown {', '.join(unknown)}")
    draw = random.Random(args.seed)
    base = git("rev-parse", args.base)
    outcomes = []
    branches = []
    kinds = [kind for kind in kinds for _ in range(args.repeat)]
    for index, kind in enumerate(kinds, 1):
        site = None if kind == "identical" else SITES.get(kind) or draw.choice(RANDOM_STAGES)
        label = "nothing" if site is None else f"{site.label} {args.factor}x"
        head = make_branch(base, f"{index}-{kind}", site, args.factor)
        branches.append(f"trial/{index}-{kind}")
        print(f"trial {index}: {label} ({head[:8]} against {base[:8]})", flush=True)
        outcome = run_gate(base, head, label, site, args.bench)
        outcomes.append(outcome)
        print(table(outcomes[-1:]).splitlines()[-1], flush=True)
    print(table(outcomes))
    if not args.keep_branches:
        for branch in branches:
            subprocess.run(["git", "branch", "-D", branch], cwd=ROOT, capture_output=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
