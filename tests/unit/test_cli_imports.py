"""The CLI's queue and history commands never import the model or analysis stacks.

``dgx-music submit`` only queues a row, and ``jobs``/``db`` only read and repair the table:
importing torch, transformers, librosa or scipy cost them seconds per command. Each command runs
in a fresh interpreter, which reports what it imported.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dgx_music.__main__ import import_for_startup

#: Modules none of these commands may load (numpy alone costs a queue command 0.1 s).
HEAVY_MODULES = ("torch", "transformers", "librosa", "scipy", "numba", "pyloudnorm", "numpy")
#: Marks the report line among the command's own output.
MARKER = "IMPORTED-HEAVY:"

#: Runs the CLI in this interpreter as the console script does (its start-up imports first),
#: then reports which heavy modules it loaded.
RUNNER = f"""
import json, sys
from dgx_music.__main__ import import_for_startup
import_for_startup()
from dgx_music.cli import app
try:
    app(sys.argv[1:], prog_name="dgx-music")
except SystemExit as exc:
    code = exc.code
else:
    code = 0
heavy = [name for name in {HEAVY_MODULES!r} if name in sys.modules]
print({MARKER!r} + json.dumps({{"code": code, "heavy": heavy}}))
"""


def cli_env(tmp_path: Path) -> dict[str, str]:
    """This environment without DGX_MUSIC_* settings, with data and outputs under ``tmp_path``."""
    return {
        **{key: value for key, value in os.environ.items() if not key.startswith("DGX_MUSIC_")},
        "DGX_MUSIC_DATA_DIR": str(tmp_path / "data"),
        "DGX_MUSIC_OUTPUT_DIR": str(tmp_path / "outputs"),
        "HF_HUB_OFFLINE": "1",
    }


def run_cli(tmp_path: Path, *args: str) -> tuple[int, list[str], str]:
    env = cli_env(tmp_path)
    result = subprocess.run(
        [sys.executable, "-c", RUNNER, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    lines = result.stdout.splitlines()
    reports = [line for line in lines if line.startswith(MARKER)]
    assert reports, f"no report from {args}: {result.stdout}\n{result.stderr}"
    report = json.loads(reports[-1].removeprefix(MARKER))
    output = "\n".join(line for line in lines if not line.startswith(MARKER))
    return report["code"], report["heavy"], output


def test_queue_and_history_commands_import_no_model_or_analysis_library(tmp_path: Path):
    code, heavy, output = run_cli(
        tmp_path, "submit", "import check, 120 bpm", "--model", "synth", "--duration", "4"
    )
    assert (code, heavy) == (0, []), output
    job_id = output.strip().splitlines()[-1]
    commands = [
        ("jobs",),
        ("jobs", "--status", "pending"),
        ("jobs", "show", job_id),
        ("jobs", "cancel", job_id),
        ("db", "upgrade"),
        ("db", "check"),
        ("db", "cleanup", "--dry-run"),
    ]
    for command in commands:
        code, heavy, output = run_cli(tmp_path, *command)
        assert code == 0, (command, output)
        assert heavy == [], f"dgx-music {' '.join(command)} imported {heavy}"


@pytest.mark.parametrize(
    "args",
    [
        ("submit", "x", "--duration", "0"),
        ("submit", "x", "--model", "no-such-model"),
        ("jobs", "show", "not-an-id"),
    ],
)
def test_rejected_commands_stay_light_too(tmp_path: Path, args: tuple[str, ...]):
    code, heavy, _ = run_cli(tmp_path, *args)
    assert code != 0
    assert heavy == []


#: Counts the cyclic collector's runs while the console script's start-up imports happen.
GC_COUNTER = """
import gc, json, sys
runs = []
def count(phase, info):
    if phase == "start":
        runs.append(info["generation"])
gc.callbacks.append(count)
from dgx_music.__main__ import import_for_startup
before = len(runs)
import_for_startup()
report = {"runs": len(runs) - before, "enabled": gc.isenabled()}
print(json.dumps({**report, "frozen": gc.get_freeze_count()}))
"""


def test_startup_imports_run_without_the_collector_and_leave_it_on():
    """The console script pauses the cyclic collector while it imports (hundreds of runs that
    free nothing otherwise), freezes what it imported, and turns the collector back on before
    any command runs, so a worker or server is never left without it."""
    result = subprocess.run(
        [sys.executable, "-c", GC_COUNTER], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["runs"] == 0
    assert report["enabled"] is True
    assert report["frozen"] > 50_000


def test_console_script_queues_lists_and_rejects(tmp_path: Path):
    """``python -m dgx_music`` runs what the ``dgx-music`` script runs: it queues a job, lists
    it, and rejects bad input with exit 2 naming the field."""
    env = cli_env(tmp_path)

    def dgx_music(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "dgx_music", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )

    submitted = dgx_music("submit", "entry check", "--model", "synth")
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip().splitlines()[-1]
    listed = dgx_music("jobs")
    assert listed.returncode == 0, listed.stderr
    assert job_id in listed.stdout
    rejected = dgx_music("submit", "x", "--duration", "0")
    assert rejected.returncode == 2
    assert "duration" in rejected.stderr


def test_import_for_startup_keeps_a_paused_collector_paused():
    """A caller that runs with the collector off (an embedding application) keeps it off."""
    gc.disable()
    try:
        import_for_startup(("json",))
        assert not gc.isenabled()
    finally:
        gc.unfreeze()
        gc.enable()
    import_for_startup(("json",))
    try:
        assert gc.isenabled()
    finally:
        gc.unfreeze()


def test_main_runs_the_cli_under_its_script_name(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    """The console script's entry point, in this process (the tests above start it as a child)."""
    from dgx_music.__main__ import main

    monkeypatch.setattr(sys, "argv", ["dgx-music", "--help"])
    try:
        with pytest.raises(SystemExit) as exited:
            main()
    finally:
        gc.unfreeze()
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert "Usage: dgx-music" in out and "submit" in out
