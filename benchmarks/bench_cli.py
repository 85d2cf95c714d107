"""The command line as a user runs it: one whole ``dgx-music`` process, from exec to exit.

``dgx-music submit`` and ``dgx-music jobs`` do about a millisecond of database work; what a user
waits on is the interpreter starting, importing its libraries and exiting. These benchmarks time
exactly that, through the console script that asv installed next to the benchmark's Python, on a
SQLite history of 200 rows (what the process does per row is the millisecond; the start-up is
the figure). A command that exits non-zero gives no figure.
"""

from __future__ import annotations

import os
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

from .common import SYNTH_PROMPT, Benchmark, make_request, scratch_dir

#: Rows in the history the commands run against.
HISTORY_ROWS = 200


def console_script() -> Path:
    """The ``dgx-music`` script of the environment the benchmark runs in."""
    return Path(sys.executable).with_name("dgx-music")


@lru_cache(maxsize=1)
def history_env() -> dict[str, str]:
    """Environment of a CLI process: its own data directory with a migrated SQLite history of
    HISTORY_ROWS pending jobs, made once per benchmark process."""
    from dgx_music.config import Settings
    from dgx_music.jobs.queue import JobManager
    from dgx_music.storage.database import Database, upgrade

    directory = scratch_dir()
    settings = Settings(data_dir=directory, output_dir=directory / "outputs")
    database = Database(f"sqlite:///{directory / 'dgx_music.db'}")
    try:
        upgrade(database)
        manager = JobManager(database, settings=settings)
        request = make_request("synth", 4.0)
        for _ in range(HISTORY_ROWS):
            manager.submit(request)
    finally:
        database.dispose()
    env = {key: value for key, value in os.environ.items() if not key.startswith("DGX_MUSIC_")}
    env.update(
        DGX_MUSIC_DATA_DIR=str(directory),
        DGX_MUSIC_OUTPUT_DIR=str(directory / "outputs"),
        HF_HUB_OFFLINE="1",
    )
    return env


class CliProcess(Benchmark):
    """``dgx-music submit`` and ``dgx-music jobs``, each a fresh process."""

    number = 1
    #: 5 to 10 samples a round of about 0.5 s each.
    repeat = (5, 10, 20.0)
    warmup_time = 0.0

    def setup(self) -> None:
        super().setup()
        self.script = console_script()
        if not self.script.exists():
            raise NotImplementedError(f"no console script at {self.script}")
        self.env = history_env()

    def run(self, *args: str) -> None:
        result = subprocess.run(
            [str(self.script), *args], env=self.env, capture_output=True, text=True, timeout=60
        )
        if result.returncode != 0:
            raise RuntimeError(f"dgx-music {args[0]} exited {result.returncode}: {result.stderr}")

    def time_submit(self) -> None:
        """Queue one synth job and print its id."""
        self.run("submit", SYNTH_PROMPT, "--model", "synth", "--duration", "4")

    def time_jobs(self) -> None:
        """List the 20 newest jobs with the total."""
        self.run("jobs")
