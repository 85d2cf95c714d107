"""Shared infrastructure for the dgx-music asv suite.

Importing this module is cheap: it builds nothing. Inputs come from the cached builders below,
called from ``setup`` methods, so no timed region ever pays for building data, loading a model
from disk twice or compiling librosa's numba code.

The seeds and the clips they make may only be added to, never changed: a changed input would
break the history of every benchmark that uses it.
"""

from __future__ import annotations

import os
import tempfile
from functools import lru_cache
from pathlib import Path

# Benchmarks never fetch weights and always run with a fixed thread count: on small CPUs torch's
# default thread pool makes timings erratic.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
#: torch intra-op threads for every benchmark (override with DGX_MUSIC_BENCH_THREADS).
THREADS = int(os.environ.get("DGX_MUSIC_BENCH_THREADS", "1"))

#: Seed of every generated input.
SEED = 1234
#: Prompt of the synth clips: tempo and key stated, so the analysis has a known answer.
SYNTH_PROMPT = "driving house groove, 124 bpm in A minor"
#: Output sample rate, Hz.
RATE = 32_000


def is_slow() -> bool:
    """True when DGX_MUSIC_BENCH_SLOW=1: include the long (30 s) and GPU-sized cases."""
    return os.environ.get("DGX_MUSIC_BENCH_SLOW", "") == "1"


def durations(quick: list[float], slow_extra: list[float]) -> list[float]:
    """Clip lengths to benchmark, seconds: ``quick`` always, ``slow_extra`` in slow mode."""
    return sorted(quick + slow_extra) if is_slow() else list(quick)


def configure_torch() -> None:
    import torch

    torch.set_num_threads(THREADS)


@lru_cache(maxsize=8)
def synth_clip(seconds: float):
    """Raw (not normalised) synth output: (2, seconds * 32000) float32."""
    from dgx_music.generation.request import GenerationRequest
    from dgx_music.generation.synth import SynthBackend

    request = GenerationRequest(prompt=SYNTH_PROMPT, duration=seconds, model="synth", seed=SEED)
    return SynthBackend().generate(request, seed=SEED).audio


@lru_cache(maxsize=8)
def normalised_clip(seconds: float):
    """Synth output after loudness normalisation: what metadata analysis sees in the pipeline."""
    from dgx_music.audio.export import LoudnessNormalizer

    return LoudnessNormalizer().process(synth_clip(seconds), RATE).audio


@lru_cache(maxsize=1)
def warm_metadata() -> None:
    """Compile librosa's numba code once per process, outside every timed region."""
    from dgx_music.audio.metadata import warm_up

    warm_up()


#: Repository root: the seeding helpers the tests use live in ``tests/utils``.
REPO_ROOT = Path(__file__).resolve().parents[1]
#: PostgreSQL server for the database benchmarks (trust auth); unset: those cases are skipped.
PG_URL = os.environ.get("DGX_MUSIC_BENCH_PG_URL") or os.environ.get("DGX_MUSIC_TEST_PG_URL")
#: Backends the database benchmarks cover.
BACKENDS = ["sqlite", "postgresql"]


def db_helpers():
    """``tests.utils.db_helpers`` (table seeding), importable from the benchmark process."""
    import sys

    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    from tests.utils import db_helpers

    return db_helpers


def fresh_database_url(backend: str, name: str) -> str:
    """An empty database for ``backend``: a new SQLite file, or a PostgreSQL database called
    ``name`` that is dropped and re-created (never reused from an earlier run)."""
    if backend == "sqlite":
        return f"sqlite:///{scratch_dir() / (name + '.db')}"
    if not PG_URL:
        raise NotImplementedError("set DGX_MUSIC_BENCH_PG_URL to benchmark PostgreSQL")
    import psycopg
    from sqlalchemy.engine import make_url

    admin = make_url(PG_URL)
    with psycopg.connect(
        admin.set(drivername="postgresql").render_as_string(hide_password=False),
        autocommit=True,
    ) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')
    return admin.set(database=name).render_as_string(hide_password=False)


def scratch_dir() -> Path:
    """A fresh directory for files a benchmark writes; removed with the process's temp files."""
    return Path(tempfile.mkdtemp(prefix="dgx-music-bench-"))


class Benchmark:
    """Base of every benchmark class: fixed threads, generous timeout for a 2-core CI box."""

    timeout = 300.0

    def setup(self, *args: object) -> None:
        configure_torch()
