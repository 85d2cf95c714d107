"""Running asv from the repository root: the command line, the machine, a run's token."""

from __future__ import annotations

import json
import os
import platform
import secrets
import subprocess
import sys
from pathlib import Path

from benchmarks import postgres

#: The repository: asv's configuration, the suite and results/ are here.
ROOT = Path(__file__).resolve().parents[1]
#: The site ``asv publish`` writes and the viewer is installed into.
HTML_DIR = ROOT / ".asv" / "html"
#: The default configuration: torch pinned through the matrix, results in results/.
DEFAULT_CONFIG = ROOT / "asv.conf.json"


def asv_command(args: list[str] | tuple[str, ...], config: Path) -> list[str]:
    """The command line of ``asv`` (the one installed beside this interpreter), echoed."""
    command = [sys.executable, "-m", "asv", *args, "--config", str(config)]
    print("$", " ".join(command[2:]), flush=True)
    return command


def asv(*args: str, config: Path = DEFAULT_CONFIG, env: dict[str, str] | None = None) -> int:
    """Run ``asv`` from the repository root."""
    return subprocess.call(asv_command(args, config), cwd=ROOT, env={**os.environ, **(env or {})})


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


def git(*args: str) -> str:
    return subprocess.check_output(["git", *args], cwd=ROOT, text=True).strip()


def default_machine() -> str:
    """asv's own default: the host name. Name a shared machine explicitly (--machine)."""
    return platform.node() or "localhost"


def run_env() -> tuple[str, dict[str, str]]:
    """A token naming this run's PostgreSQL databases and cached inputs, and the environment
    that carries it to every benchmark process."""
    token = secrets.token_hex(4)
    return token, {postgres.TOKEN_VARIABLE: token}


def end_run(token: str) -> None:
    """Drop what a run made: its PostgreSQL databases and its scratch directory."""
    postgres.drop_bench_databases(token)
    postgres.remove_run_scratch(token)


def start(machine: str | None, config: Path) -> tuple[str, str, dict[str, str]] | None:
    """What a recording command needs first: the machine (registered with asv) and a run token
    with its environment; None when asv cannot register the machine."""
    machine = machine or default_machine()
    if asv("machine", "--yes", "--machine", machine, config=config) != 0:
        return None
    print(postgres.describe(), flush=True)
    token, env = run_env()
    return machine, token, env


def scratch_config(
    scratch: Path, results_dir: Path | None = None, base: Path = DEFAULT_CONFIG
) -> Path:
    """``base`` (asv.conf.json) with the results and the site under ``scratch`` (or
    ``results_dir``), so a check, a noise run or the gate's confirmation leaves results/ alone;
    the asv environments are the usual ones."""
    from asv.util import load_json

    conf = load_json(str(base), js_comments=True)
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
