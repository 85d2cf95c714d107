"""The asv suite as one tool: what ``make bench``, ``make publish``, ``make bench-compare`` and
``make bench-check`` run.

    python scripts/bench.py run [--machine NAME] [--config FILE] [--quick]
        record the whole suite for the checked-out commit in an asv-managed virtualenv (keyed by
        Python and torch versions), publish the offline site, print a table of headline figures
    python scripts/bench.py publish
        rebuild the site in .asv/html from results/ alone (asv publish + the asv-tachyon viewer)
    python scripts/bench.py summary [--machine NAME] [--commit REF]
        the headline table of a recorded commit
    python scripts/bench.py compare BASE HEAD [--factor F] [--rounds N]
        the regression gate (the pull-request workflow runs exactly this): exit 1 on a slowdown
    python scripts/bench.py check
        CI's guard: ``asv check`` and one quick pass of every benchmark with PostgreSQL and once
        without it; exit 1 when any benchmark fails or a PostgreSQL case did not run
    python scripts/bench.py cleanup
        drop PostgreSQL databases left by interrupted benchmark runs

PostgreSQL cases use DGX_MUSIC_BENCH_PG_URL, else a server answering on 127.0.0.1:5432, else
they are skipped (n/a) and the run still succeeds. DGX_MUSIC_BENCH_PG_URL=off forces that.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import secrets
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import common  # noqa: E402  (stdlib-only at import time)

#: The site ``asv publish`` writes and the viewer is installed into.
HTML_DIR = ROOT / ".asv" / "html"
#: The default configuration: torch pinned through the matrix, results in results/.
DEFAULT_CONFIG = ROOT / "asv.conf.json"
#: Regression factor of the gate on a shared 2-core runner (see docs/BENCHMARKING.md, "The gate").
DEFAULT_FACTOR = 1.4


def asv_command(args: Sequence[str], config: Path) -> list[str]:
    """The command line of ``asv`` (the one installed beside this interpreter), echoed."""
    command = [sys.executable, "-m", "asv", *args, "--config", str(config)]
    print("$", " ".join(command[2:]), flush=True)
    return command


def asv(*args: str, config: Path = DEFAULT_CONFIG, env: dict[str, str] | None = None) -> int:
    """Run ``asv`` from the repository root."""
    return subprocess.call(asv_command(args, config), cwd=ROOT, env={**os.environ, **(env or {})})


def git(*args: str) -> str:
    return subprocess.check_output(["git", *args], cwd=ROOT, text=True).strip()


def default_machine() -> str:
    """asv's own default: the host name. Name a shared machine explicitly (--machine)."""
    return platform.node() or "localhost"


def describe_postgres() -> str:
    url = common.pg_url()
    if not url:
        return (
            "PostgreSQL: none (DGX_MUSIC_BENCH_PG_URL unset or off, nothing on 127.0.0.1:5432):"
            " its cases are n/a"
        )
    from sqlalchemy.engine import make_url

    return f"PostgreSQL: {make_url(url).render_as_string(hide_password=True)}"


# --- PostgreSQL databases of a run ------------------------------------------------------------


def drop_bench_databases(token: str | None) -> list[str]:
    """Drop ``dgx_music_bench_<token>_*`` (every ``dgx_music_bench_*`` when token is None)."""
    url = common.pg_url()
    if not url:
        return []
    import psycopg
    from sqlalchemy.engine import make_url

    prefix = common.PG_DATABASE_PREFIX + (f"{token}_" if token else "")
    admin = make_url(url).set(drivername="postgresql", database="postgres")
    with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as conn:
        names = [
            row[0]
            for row in conn.execute("SELECT datname FROM pg_database")
            if row[0].startswith(prefix)
        ]
        for name in names:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return names


def run_env() -> tuple[str, dict[str, str]]:
    """A token naming this run's PostgreSQL databases, and the environment that carries it."""
    token = secrets.token_hex(4)
    return token, {"DGX_MUSIC_BENCH_TOKEN": token}


# --- Results ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Headline:
    """One row of the summary: a benchmark, the parameter values to show, how to print it."""

    label: str
    benchmark: str
    params: tuple[str, ...]
    unit: str  # "ms", "s", "MiB", "x" (ratio), "%", "jobs/min" (divide = jobs in the figure)
    divide: float = 1.0


#: The figures a user asks about first; keys are asv's repr of the parameter values.
HEADLINES = [
    Headline(
        "export 16 s (normalise+limit+write)", "bench_export.ExportWav.time_export", ("16.0",), "ms"
    ),
    Headline("export 4 s", "bench_export.ExportWav.time_export", ("4.0",), "ms"),
    Headline(
        "export 16 s, own peak memory",
        "bench_export.ExportWav.track_export_peak_mib",
        ("16.0",),
        "MiB",
    ),
    Headline("metadata 16 s (warm)", "bench_metadata.AnalyzeClip.time_analyze", ("16.0",), "ms"),
    Headline(
        "synth generation 16 s", "bench_generation.SynthGenerate.time_generate", ("16.0",), "ms"
    ),
    Headline(
        "tiny MusicGen 8 s (CPU)",
        "bench_generation.TinyMusicgenGenerate.time_generate",
        ("8.0",),
        "s",
    ),
    Headline(
        "tiny MusicGen real-time factor (time / 8 s)",
        "bench_generation.TinyMusicgenGenerate.time_generate",
        ("8.0",),
        "x",
        8.0,
    ),
    Headline(
        "musicgen-small 16 s (GPU)",
        "bench_generation.MusicgenGpuGenerate.time_generate",
        ("'facebook/musicgen-small'", "16.0"),
        "s",
    ),
    Headline(
        "musicgen-small real-time factor (time / 16 s)",
        "bench_generation.MusicgenGpuGenerate.time_generate",
        ("'facebook/musicgen-small'", "16.0"),
        "x",
        16.0,
    ),
    Headline(
        "musicgen-small GPU peak (torch)",
        "bench_generation.MusicgenGpuGenerate.track_gpu_peak_memory",
        ("'facebook/musicgen-small'", "16.0"),
        "MiB",
    ),
    Headline(
        "one synth job end to end", "bench_pipeline.PipelineJob.time_one_job", ("'synth'",), "s"
    ),
    Headline(
        "synth jobs, 2 workers, s/job",
        "bench_pipeline.PipelineThroughput.time_drain_batch",
        ("'synth'", "2"),
        "s",
        4.0,
    ),
    Headline(
        "one tiny job end to end",
        "bench_pipeline.PipelineJob.time_one_job",
        ("'tiny'",),
        "s",
    ),
    Headline(
        "musicgen-small twin 2 s (CPU, fp32)",
        "bench_generation.TwinGenerate.time_generate",
        ("'twin:facebook/musicgen-small'", "2.0"),
        "s",
    ),
    Headline(
        "musicgen-small twin 16 s (GPU, fp16)",
        "bench_generation.MusicgenGpuGenerate.time_generate",
        ("'twin:facebook/musicgen-small'", "16.0"),
        "s",
    ),
    Headline(
        "musicgen-small twin GPU peak (torch)",
        "bench_generation.MusicgenGpuGenerate.track_gpu_peak_memory",
        ("'twin:facebook/musicgen-small'", "16.0"),
        "MiB",
    ),
    *[
        Headline(
            f"tiny 1 s jobs, batch {batch}",
            "bench_pipeline.QueueBatching.time_drain_queue",
            ("'tiny'", str(batch)),
            "jobs/min",
            8.0,
        )
        for batch in (1, 4, 8)
    ],
    *[
        Headline(
            f"small-twin 1 s jobs, batch {batch} (GPU)",
            "bench_pipeline.QueueBatchingGpu.time_drain_queue",
            ("'twin:facebook/musicgen-small'", str(batch)),
            "jobs/min",
            8.0,
        )
        for batch in (1, 8)
    ],
    Headline(
        "EnCodec decode of 120 s (small twin, CPU): peak vs 30 s",
        "bench_generation.CodecDecodeMemory.track_decode_peak_vs_30s",
        ("120.0",),
        "x",
    ),
    Headline(
        "EnCodec decode of 120 s (small twin, CPU): peak",
        "bench_generation.CodecDecodeMemory.track_decode_peak_mib",
        ("120.0",),
        "MiB",
    ),
    *[
        Headline(
            f"tiny MusicGen {seconds:g} s in windows, time / length (slow mode)",
            "bench_generation.TinyLongform.time_generate",
            (f"{seconds!r}",),
            "x",
            seconds,
        )
        for seconds in (30.0, 120.0, 300.0)
    ],
    *[
        Headline(
            f"4 x 40 s + 4 x 5 s tiny jobs, {policy} (slow mode)",
            "bench_generation.LongShortBatching.time_generate",
            (f"'{policy}'",),
            "jobs/min",
            8.0,
        )
        for policy in ("mixed", "grouped")
    ],
    Headline(
        "status lookup, 100k rows, SQLite",
        "bench_database.HistoryQueries.time_status_lookup",
        ("'sqlite'", "100000"),
        "ms",
    ),
    Headline(
        "status lookup, 100k rows, PostgreSQL",
        "bench_database.HistoryQueries.time_status_lookup",
        ("'postgresql'", "100000"),
        "ms",
    ),
    Headline(
        "newest 50 + total, 100k rows, PostgreSQL",
        "bench_database.HistoryQueries.time_list_newest",
        ("'postgresql'", "100000"),
        "ms",
    ),
    Headline(
        "API status by id (app on a server loop)",
        "bench_api.ApiServerLoop.time_get_status",
        (),
        "ms",
    ),
    Headline("API submit (app on a server loop)", "bench_api.ApiServerLoop.time_submit", (), "ms"),
    Headline(
        "API status by id (through TestClient)", "bench_api.ApiRequests.time_get_status", (), "ms"
    ),
    Headline("dgx-music submit, whole process", "bench_cli.CliProcess.time_submit", (), "s"),
    Headline("dgx-music jobs, whole process", "bench_cli.CliProcess.time_jobs", (), "s"),
]


def result_files(results_dir: Path, machine: str, commit: str) -> list[Path]:
    return sorted((results_dir / machine).glob(f"{commit[:8]}-*.json"))


def load_results(path: Path) -> dict[str, dict[tuple[str, ...], float | None]]:
    """{benchmark: {parameter values: figure}} from one asv result file."""
    data = json.loads(path.read_text())
    columns = data["result_columns"]
    figures: dict[str, dict[tuple[str, ...], float | None]] = {}
    for name, row in data["results"].items():
        entry = dict(zip(columns, row, strict=False))
        values = entry.get("result") or []
        params = entry.get("params") or []
        combos = list(_product(params)) if params else [()]
        figures[name] = dict(zip(combos, values, strict=False))
    return figures


def _product(params: Sequence[Sequence[str]]) -> Iterator[tuple[str, ...]]:
    import itertools

    return itertools.product(*params)


def format_figure(value: float | None, unit: str, divide: float) -> str:
    if value is None or value != value:  # None or NaN: skipped or not run
        return "n/a"
    if unit == "jobs/min":  # a time for ``divide`` jobs, shown as a rate
        return f"{60 * divide / value:.3g} jobs/min"
    value /= divide
    if unit == "ms":
        return f"{value * 1e3:.3g} ms"
    if unit == "s":
        return f"{value:.3g} s"
    if unit == "MiB":
        return f"{value:.3g} MiB"
    if unit == "x":
        return f"{value:.3g}"
    return f"{value:.3g} {unit}"


def cmd_summary(machine: str, commit: str, results_dir: Path = ROOT / "results") -> int:
    files = result_files(results_dir, machine, commit)
    if not files:
        print(
            f"no results for {commit[:8]} on machine {machine!r} in {results_dir}", file=sys.stderr
        )
        return 1
    from rich.console import Console
    from rich.table import Table

    for path in files:
        figures = load_results(path)
        table = Table(title=f"{machine} · {commit[:8]} · {path.stem.split('-', 1)[1]}")
        table.add_column("what")
        table.add_column("figure", justify="right")
        table.add_column("benchmark")
        for row in HEADLINES:
            value = figures.get(row.benchmark, {}).get(row.params)
            shown = row.benchmark.split(".", 1)[1] + (
                f"({', '.join(row.params)})" if row.params else ""
            )
            table.add_row(row.label, format_figure(value, row.unit, row.divide), shown)
        Console().print(table)
    return 0


# --- Commands ---------------------------------------------------------------------------------


def start(args: argparse.Namespace) -> tuple[str, Path, str, dict[str, str]] | None:
    """What a recording command needs first: the machine (registered with asv), the config,
    and a run token with its environment; None when asv cannot register the machine."""
    machine = args.machine or default_machine()
    config = Path(args.config).resolve()
    if asv("machine", "--yes", "--machine", machine, config=config) != 0:
        return None
    print(describe_postgres(), flush=True)
    token, env = run_env()
    return machine, config, token, env


def cmd_run(args: argparse.Namespace) -> int:
    started = start(args)
    if started is None:
        return 1
    machine, config, token, env = started
    commit = git("rev-parse", "HEAD")
    run_args = ["run", "--machine", machine, "--show-stderr", f"{commit}^!"]
    if args.quick:
        run_args.append("--quick")
    try:
        status = asv(*run_args, config=config, env=env)
    finally:
        drop_bench_databases(token)
    if cmd_publish(config) != 0:
        return 1
    cmd_summary(machine, commit)
    print(
        f"\nsite: {HTML_DIR / 'index.html'}  (python -m http.server -d {HTML_DIR} --bind 127.0.0.1)"
    )
    if status not in (0,):
        print(f"asv run exited {status}: a benchmark failed (skipped cases are n/a, not failures)")
    return status


#: Files of asv's legacy page that load libraries from CDNs; the viewer replaces that page.
LEGACY_PAGES = ["index.legacy.html"]
EXTERNAL_REFERENCE = re.compile(
    r"""<(?:script|link)\b[^>]*\b(?:src|href)=["']?(?:https?:)?//""", re.I
)


def cmd_publish(config: Path = DEFAULT_CONFIG) -> int:
    """asv publish, then the asv-tachyon viewer over the same data; no page may load anything
    from another host (the site must work with no internet)."""
    if asv("publish", config=config) != 0:
        return 1
    subprocess.check_call([sys.executable, "-m", "asv_tachyon", "install", str(HTML_DIR)])
    for name in LEGACY_PAGES:
        (HTML_DIR / name).unlink(missing_ok=True)
    external = [
        str(page.relative_to(HTML_DIR))
        for page in HTML_DIR.rglob("*.html")
        if EXTERNAL_REFERENCE.search(page.read_text(errors="replace"))
    ]
    if external:
        print(f"pages that load from another host: {', '.join(external)}", file=sys.stderr)
        return 1
    return 0


#: Rounds per commit in the gate's confirmation pass (the first pass runs each benchmark's own).
CONFIRM_ROUNDS = 4
#: Factor of the confirmation pass: the slowdown must show again, at least this large and
#: significant by asv's test. On the 2-core EPYC runner the first pass's false alarms came back
#: at 0.75-1.01 and an injected 1.5x export slowdown at 1.26-1.34 (docs/BENCHMARKING.md).
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


def asv_output(*args: str, config: Path, env: dict[str, str]) -> tuple[int, str]:
    """Run ``asv`` like :func:`asv`, echoing its output as it comes, and return it too."""
    lines = []
    with subprocess.Popen(
        asv_command(args, config),
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:
            print(line, end="", flush=True)
            lines.append(line)
    return process.returncode, "".join(lines)


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


def cmd_compare(args: argparse.Namespace) -> int:
    """The gate: both commits in the same asv environment, rounds interleaved between them; a
    slowdown must show in two passes (see docs/BENCHMARKING.md, "The gate")."""
    started = start(args)
    if started is None:
        return 1
    machine, config, token, env = started

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
        drop_bench_databases(token)


def cmd_check(args: argparse.Namespace) -> int:
    """asv check, then every benchmark once (quick) with and without PostgreSQL."""
    if asv("check", "--python=same") != 0:
        return 1
    if asv("machine", "--yes", "--machine", "bench-check") != 0:
        return 1
    failures = []
    for postgres in (True, False):
        if postgres and not common.pg_url():
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
                drop_bench_databases(token)
            problems = check_results(Path(scratch) / "results", postgres=postgres)
        label = "with PostgreSQL" if postgres else "without PostgreSQL"
        if status != 0:
            problems.insert(0, f"asv run exited {status}")
        failures += [f"{label}: {problem}" for problem in problems]
        print(f"bench-check {label}: {'ok' if not problems else 'FAILED'}", flush=True)
    for failure in failures:
        print(f"bench-check: {failure}", file=sys.stderr)
    return 1 if failures else 0


def scratch_config(scratch: Path, results_dir: Path | None = None) -> Path:
    """asv.conf.json with the results and the site under ``scratch`` (or ``results_dir``), so a
    check or a noise run leaves results/ alone; the asv environments are the usual ones."""
    from asv.util import load_json

    conf = load_json(str(DEFAULT_CONFIG), js_comments=True)
    conf.update(
        repo=str(ROOT),
        benchmark_dir=str(ROOT / "benchmarks"),
        results_dir=str(results_dir or scratch / "results"),
        html_dir=str(scratch / "html"),
        env_dir=str(ROOT / conf["env_dir"]),
    )
    scratch.mkdir(parents=True, exist_ok=True)
    path = scratch / "asv.conf.json"
    path.write_text(json.dumps(conf))
    return path


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


def check_results(results_dir: Path, *, postgres: bool) -> list[str]:
    """Every benchmark has a figure, except :data:`NOT_IN_QUICK_CPU_RUN` and PostgreSQL cases
    when ``postgres`` is false. A figure of None with no skip reason is a failure."""
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
            if not postgres and "'postgresql'" in params:
                continue
            problems.append(f"{name}{params or ''} has no figure")
    return problems


def cmd_cleanup(args: argparse.Namespace) -> int:
    for name in drop_bench_databases(None):
        print(f"dropped {name}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="record the suite for HEAD, publish, summarise")
    run.add_argument("--machine", default=os.environ.get("BENCH_MACHINE") or None)
    run.add_argument("--config", default=str(DEFAULT_CONFIG))
    run.add_argument("--quick", action="store_true", help="one sample per benchmark")

    commands.add_parser("publish", help="rebuild the offline site from results/")

    summary = commands.add_parser("summary", help="headline figures of a recorded commit")
    summary.add_argument("--machine", default=os.environ.get("BENCH_MACHINE") or None)
    summary.add_argument("--commit", default="HEAD")

    compare = commands.add_parser("compare", help="the regression gate between two commits")
    compare.add_argument("base")
    compare.add_argument("head")
    compare.add_argument("--factor", type=float, default=DEFAULT_FACTOR)
    compare.add_argument(
        "--rounds",
        type=int,
        help="rounds per commit for every benchmark (default: each benchmark's own, 2 for time_)",
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
    compare.add_argument("--machine", default=os.environ.get("BENCH_MACHINE") or None)
    compare.add_argument("--config", default=str(DEFAULT_CONFIG))

    commands.add_parser("check", help="asv check + a quick pass with and without PostgreSQL")
    commands.add_parser("cleanup", help="drop leftover dgx_music_bench_* databases")

    args = parser.parse_args(argv)
    if args.command == "run":
        return cmd_run(args)
    if args.command == "publish":
        return cmd_publish()
    if args.command == "summary":
        return cmd_summary(args.machine or default_machine(), git("rev-parse", args.commit))
    if args.command == "compare":
        return cmd_compare(args)
    if args.command == "check":
        return cmd_check(args)
    return cmd_cleanup(args)


if __name__ == "__main__":
    sys.exit(main())
