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
import threading
import tracemalloc
from collections.abc import Callable
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
#: Shape twins of the real checkpoints: their architecture, seeded random weights, so their
#: time and memory are the real model's with no download. Written out rather than read from
#: dgx_music.generation.twins.TWIN_CHECKPOINTS: a benchmark's parameters must be the same for
#: every commit asv measures, older ones included (tests/unit/test_twins.py keeps them equal).
TWINS = [
    "twin:facebook/musicgen-small",
    "twin:facebook/musicgen-medium",
    "twin:facebook/musicgen-large",
    "twin:facebook/musicgen-stereo-small",
    "twin:facebook/musicgen-stereo-medium",
    "twin:facebook/musicgen-stereo-large",
]
#: Prompt of the synth clips: tempo and key stated, so the analysis has a known answer.
SYNTH_PROMPT = "driving house groove, 124 bpm in A minor"
#: Output sample rate, Hz.
RATE = 32_000
#: Bytes in a mebibyte: every memory figure of the suite is reported in MiB.
MIB = 2**20


def is_slow() -> bool:
    """True when DGX_MUSIC_BENCH_SLOW=1: include the long (30 s) and GPU-sized cases."""
    return os.environ.get("DGX_MUSIC_BENCH_SLOW", "") == "1"


def durations(quick: list[float], slow_extra: list[float]) -> list[float]:
    """Clip lengths to benchmark, seconds: ``quick`` always, ``slow_extra`` in slow mode."""
    return sorted(quick + slow_extra) if is_slow() else list(quick)


def configure_process() -> None:
    """Set up the benchmark process as the service sets up its own: fixed torch threads, and
    freed audio buffers kept (``MusicEngine`` does it in the service; commits before
    ``dgx_music.memory`` existed run without it, as their service did)."""
    import torch

    torch.set_num_threads(THREADS)
    try:
        from dgx_music.config import get_settings
        from dgx_music.memory import keep_freed_memory
    except ImportError:
        return
    keep_freed_memory(get_settings().malloc_keep_mb)


def require_cuda() -> None:
    """Raise NotImplementedError (asv: skipped) unless torch sees a CUDA device.

    Looks for a GPU device node before importing torch: every case of a GPU class runs in a
    fresh process, and importing torch there only to learn that there is no GPU cost the gate
    about 1.6 s a case on the 2-core runner (a minute and a half per commit and round for the
    CUDA classes).
    """
    devices = Path("/dev")
    if not any(devices.glob("nvidia[0-9]*")) and not (devices / "dxg").exists():
        raise NotImplementedError("needs a CUDA device (no /dev/nvidia* or /dev/dxg)")
    import torch

    if not torch.cuda.is_available():
        raise NotImplementedError("needs a CUDA device")


def make_request(model: str, seconds: float):
    """The suite's generation request: :data:`SYNTH_PROMPT`, :data:`SEED`, ``seconds`` long."""
    from dgx_music.generation.request import GenerationRequest

    return GenerationRequest(prompt=SYNTH_PROMPT, duration=seconds, model=model, seed=SEED)


@lru_cache(maxsize=1)
def loaded_engine(model: str):
    """A ``MusicEngine`` with ``model`` loaded and run once on a 1 s clip, cached per process:
    asv re-runs ``setup`` before every timed call, and neither the load nor the first-call
    warm-up may be timed. Raises NotImplementedError when the model's weights are not here."""
    from dgx_music.generation.engine import MusicEngine

    engine = MusicEngine()
    info = {m.name: m for m in engine.available_models()}
    if model in info and not info[model].available_offline:
        raise NotImplementedError(f"{model} weights are not on this machine")
    # A shape twin's first call costs seconds of real-size decoding: a short clip warms it.
    engine.generate(make_request(model, 0.2 if model in TWINS else 1.0))
    return engine


@lru_cache(maxsize=8)
def synth_clip(seconds: float):
    """Raw (not normalised) synth output: (2, seconds * 32000) float32."""
    from dgx_music.generation.synth import SynthBackend

    return SynthBackend().generate(make_request("synth", seconds), seed=SEED).audio


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


# --- Memory of one stage ----------------------------------------------------------------------
# asv's peakmem_ is the process's maximum RSS, which here is dominated by importing torch
# (~300 MB) and says nothing about the stage. These figures are the stage's own allocations.


def traced_peak_mib(stage: Callable[[], object]) -> float:
    """Peak of the memory ``stage`` allocates through Python and numpy, MiB above its start.

    numpy reports every array buffer to tracemalloc, so for the numpy/scipy stages (export,
    metadata) this is the stage's working set, independent of what the process imported.
    """
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        start, _ = tracemalloc.get_traced_memory()
        stage()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return (peak - start) / MIB


def sampled_peak(
    read: Callable[[], int], stage: Callable[[], object], interval: float
) -> tuple[int, int]:
    """``(level before, highest level while stage ran)`` of a gauge such as a GPU's used
    memory, read by a thread every ``interval`` seconds and once more at the end."""
    before = read()
    peak = before
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, read())
            done.wait(interval)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        stage()
    finally:
        done.set()
        sampler.join()
    return before, max(peak, read())


def torch_peak_mib(stage: Callable[[], object]) -> float:
    """Peak of the CPU tensor memory ``stage`` holds at once, MiB, from torch's profiler.

    torch's CPU tensors are invisible to tracemalloc. The profiler records every allocation and
    release of tensor memory with the operator that made it; summing them in the order the
    operators started gives the live tensor memory over time. Unlike the resident set (which
    depends on what malloc kept from earlier calls, and moved 1.4x between identical runs),
    this is the same for the same work on every run.
    """
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as profiler:
        stage()
    live = peak = 0
    for event in sorted(profiler.events(), key=lambda event: event.time_range.start):
        live += event.self_cpu_memory_usage
        peak = max(peak, live)
    return peak / MIB


# --- Databases --------------------------------------------------------------------------------

#: Backends the database benchmarks cover (PostgreSQL found or skipped by ``postgres.pg_url``).
BACKENDS = ["sqlite", "postgresql"]


def settle(database) -> None:
    """Bring a freshly seeded database to a steady state before anything is timed: vacuumed
    and analysed, so the planner has statistics and no autovacuum run lands in a timed region.

    Each commit of a gate run seeds its own copy; without this, one copy was timed before the
    autovacuum daemon analysed it and the other after, and identical code differed by 1.3x.
    """
    from sqlalchemy import text

    with database.engine.connect() as connection:
        connection = connection.execution_options(isolation_level="AUTOCOMMIT")
        connection.execute(text("VACUUM ANALYZE" if not database.is_sqlite else "ANALYZE"))


def scratch_dir() -> Path:
    """A fresh directory for files a benchmark writes; removed with the process's temp files."""
    return Path(tempfile.mkdtemp(prefix="dgx-music-bench-"))


def seeded_sqlite_history(rows: int) -> Path:
    """A fresh directory holding ``dgx_music.db``: a migrated SQLite history of ``rows``
    generations (:func:`benchmarks.seeding.bulk_seed_generations`), settled."""
    from dgx_music.storage.database import Database, upgrade

    from .seeding import bulk_seed_generations

    directory = scratch_dir()
    database = Database(f"sqlite:///{directory / 'dgx_music.db'}")
    upgrade(database)
    with database.session() as session:
        bulk_seed_generations(session, rows)
    settle(database)
    database.dispose()
    return directory


def track(unit: str) -> Callable[[Callable[..., float]], Callable[..., float]]:
    """Mark a ``track_`` method: the unit asv shows, and a single round. These figures are
    deterministic (memory, quality) or a single observation beside a timed twin, so a second
    process would only cost the suite's time."""

    def mark(method: Callable[..., float]) -> Callable[..., float]:
        method.unit = unit  # type: ignore[attr-defined]
        method.rounds = 1  # type: ignore[attr-defined]
        return method

    return mark


class Benchmark:
    """Base of every benchmark class: fixed threads, generous timeout for a 2-core CI box."""

    timeout = 300.0

    def setup(self, *args: object) -> None:
        configure_process()


class FastBenchmark(Benchmark):
    """Base of the benchmarks whose call takes milliseconds (queries, requests, export): 10 to
    20 samples a round instead of asv's 1 to 5. On a shared runner a neighbour's burst spoils
    a few samples of a round; with 10 a side, three spoiled base samples kept asv's test from
    calling a 1.5x slower status lookup significant (docs/BENCHMARKING.md, "The gate"). The
    extra samples cost well under a second a round. (Class attributes are not part of a
    benchmark's version, so the history of these benchmarks continues.)"""

    repeat = (10, 20, 10.0)
