"""Performance against the spec's targets (spec, module 4), where the offline models make a
target meaningful.

Asserted here: a 16 s track in under 30 s (synth and the tiny MusicGen on the CPU, the real
checkpoint on a GPU), its WAV export in under 1 s, a status lookup under 50 ms, the newest-50
query under 100 ms and a 100-row page under 200 ms on a 1,000-row history, a worker that takes
the next job at once, and no memory left behind by a generation (RSS and torch's allocator).
Each test prints its figures in the spec's report format. Timed queries take the best of a few
runs, so one scheduling hiccup on a shared CPU is not a failure. Real measurement, with repeats
and history, is the asv suite in ``benchmarks/`` (docs/BENCHMARKING.md).
"""

from __future__ import annotations

import gc
import itertools
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from dgx_music.audio.export import export_wav
from dgx_music.generation.engine import MusicEngine
from dgx_music.generation.request import GenerationRequest
from dgx_music.jobs.pipeline import produce_track
from dgx_music.jobs.queue import JobManager
from dgx_music.jobs.worker import Worker
from dgx_music.storage.models import GenerationStatus
from tests.conftest import GPU_MODEL
from tests.utils.db_helpers import seed_test_generations, synth_request

pytestmark = pytest.mark.usefixtures("warm_metadata")

#: Spec targets (blockers are twice to five times these; the asv suite tracks the real figures).
GENERATION_16S_TARGET_S = 30.0
WAV_EXPORT_16S_TARGET_S = 1.0
QUERY_TARGET_S = 0.100
STATUS_TARGET_S = 0.050
BULK_100_TARGET_S = 0.200
GPU_MEMORY_TARGET_GB = 20.0
GPU_MEMORY_BLOCKER_GB = 30.0
#: Longest pause between one job's completion and the next claim by the same busy worker, s.
NEXT_CLAIM_GAP_S = 0.25
#: Timed queries: best of this many runs.
QUERY_RUNS = 5


def report(label: str, seconds: float, target_s: float, audio_seconds: float | None = None) -> None:
    """Print a figure in the spec's format: time, real-time factor (for audio), verdict."""
    subject = f" for {audio_seconds:.0f}s audio" if audio_seconds else ""
    print(f"\n{label}: {seconds:.3f}s{subject}")
    if audio_seconds:
        print(f"Real-time factor: {seconds / audio_seconds:.2f}x")
    if seconds < target_s:
        print(f"✓ EXCELLENT: Within {target_s:g}s target")
    else:
        print(f"✗ SLOW: Over the {target_s:g}s target")


def best_of(action: Callable[[], Any], runs: int = QUERY_RUNS) -> float:
    """Shortest wall time of ``runs`` calls, seconds."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return min(times)


class TestGenerationLatency:
    @pytest.mark.parametrize("model", ["synth", "tiny"])
    def test_16s_generation_under_30s(self, tmp_path: Path, model: str):
        request = GenerationRequest(prompt="groove, 100 bpm in C major", duration=16.0, model=model)
        engine = MusicEngine()
        backend = engine.backend(model)
        if hasattr(backend, "load"):
            backend.load()  # loading the checkpoint is not generating
        started = time.perf_counter()
        track = produce_track(request, tmp_path / "16s.wav", engine=engine)
        elapsed = time.perf_counter() - started
        report("Generation time", elapsed, GENERATION_16S_TARGET_S, track.export.duration_s)
        assert track.export.duration_s == pytest.approx(16.0)
        assert elapsed < GENERATION_16S_TARGET_S
        # The export step alone (normalise, limit, PCM16, atomic write) of the same 16 s.
        started = time.perf_counter()
        export_wav(track.generation.audio, track.generation.sample_rate, tmp_path / "again.wav")
        exported = time.perf_counter() - started
        report("WAV export time", exported, WAV_EXPORT_16S_TARGET_S, 16.0)
        assert exported < WAV_EXPORT_16S_TARGET_S

    @pytest.mark.gpu
    def test_real_generation_performance(self, tmp_path: Path, real_engine: MusicEngine):
        request = GenerationRequest(prompt="upbeat funk with brass", duration=16.0, model=GPU_MODEL)
        real_engine.generate(GenerationRequest(prompt="warm up", duration=1.0, model=GPU_MODEL))
        started = time.perf_counter()
        track = produce_track(request, tmp_path / "gpu.wav", engine=real_engine)
        elapsed = time.perf_counter() - started
        report("Generation time", elapsed, GENERATION_16S_TARGET_S, 16.0)
        assert track.generation.device.startswith("cuda")
        assert elapsed < GENERATION_16S_TARGET_S

    def test_multiple_short_generations_throughput(self, manager: JobManager):
        """A busy worker runs job after job with no idle gap, each well within the target."""
        count, seconds = 6, 2.0
        for index in range(count):
            manager.submit(synth_request(duration=seconds, seed=index))
        worker = Worker(manager, worker_id="throughput", exit_when_empty=True)
        started = time.perf_counter()
        worker.run()
        elapsed = time.perf_counter() - started
        jobs = sorted(
            manager.list(status=GenerationStatus.COMPLETED, limit=count)[0],
            key=lambda job: job.started_at,
        )
        assert worker.processed == len(jobs) == count
        per_minute = count / elapsed * 60
        # The spec's target (16 s in 30 s) scaled to these clips, as jobs per minute.
        floor = 60 / (seconds * GENERATION_16S_TARGET_S / 16)
        report("Generation time", elapsed / count, seconds * GENERATION_16S_TARGET_S / 16, seconds)
        print(f"Throughput: {per_minute:.0f} jobs/minute (floor {floor:.0f}), one worker")
        gaps = [
            (after.started_at - before.completed_at).total_seconds()  # type: ignore[operator]
            for before, after in itertools.pairwise(jobs)
        ]
        print(f"Idle between jobs: longest {max(gaps) * 1000:.0f} ms")
        assert per_minute > floor
        # The worker claims the next job as soon as one is done: no poll wait, no reload. A
        # wait in the loop shows in every gap, so the median is held to it: on a loaded runner
        # one gap of five once took 1.0 s (the others 3-16 ms), a stall of the machine (an
        # fsync of SQLite's checkpoint behind the other test worker's writes), not a wait.
        assert statistics.median(gaps) < NEXT_CLAIM_GAP_S, gaps


@pytest.fixture
def large_history(manager: JobManager) -> JobManager:
    with manager.database.session() as session:
        seed_test_generations(session, 1_000)
    return manager


class TestAPIResponseTime:
    def test_database_query_performance(self, large_history: JobManager):
        jobs: list = []
        large_history.list(limit=50)  # first use of the connection pool is not the query
        elapsed = best_of(lambda: jobs.append(large_history.list(limit=50)))
        report("Newest-50 query on 1,000 rows", elapsed, QUERY_TARGET_S)
        assert len(jobs[-1][0]) == 50 and jobs[-1][1] == 1_000
        assert elapsed < QUERY_TARGET_S

    def test_status_check_performance(self, large_history: JobManager):
        some_id = large_history.list(limit=1, offset=500)[0][0].id
        large_history.get(some_id)  # first use of the connection pool is not the lookup
        elapsed = best_of(lambda: large_history.get(some_id))
        report("Status lookup on 1,000 rows", elapsed, STATUS_TARGET_S)
        assert large_history.get(some_id).id == some_id
        assert elapsed < STATUS_TARGET_S

    def test_bulk_query_performance(self, large_history: JobManager):
        pages: list = []
        large_history.list(limit=100)
        elapsed = best_of(lambda: pages.append(large_history.list(limit=100, offset=400)[0]))
        report("Bulk query of 100 records", elapsed, BULK_100_TARGET_S)
        assert len(pages[-1]) == 100 and len({job.id for job in pages[-1]}) == 100
        assert elapsed < BULK_100_TARGET_S


def rss_bytes() -> int:
    """Resident set size of this process now (Linux /proc), bytes."""
    status = Path("/proc/self/status")
    if not status.exists():
        pytest.skip("RSS is read from /proc/self/status (Linux only)")
    for line in status.read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS line in /proc/self/status")


def live_tensors() -> int:
    """Torch tensors the garbage collector can reach (what a per-job leak would pile up)."""
    # type() rather than isinstance(): it never touches a dead weak proxy's referent.
    return sum(1 for obj in gc.get_objects() if issubclass(type(obj), torch.Tensor))


class TestMemoryUsage:
    @pytest.mark.gpu
    def test_gpu_memory_under_budget(self, tmp_path: Path, real_engine: MusicEngine):
        torch.cuda.reset_peak_memory_stats()
        request = GenerationRequest(prompt="orchestral swell", duration=30.0, model=GPU_MODEL)
        produce_track(request, tmp_path / "mem.wav", engine=real_engine)
        peak_gb = torch.cuda.max_memory_allocated() / 2**30
        print(f"\nGPU peak memory: {peak_gb:.2f} GB for 30 s of {GPU_MODEL}")
        print(f"{'✓ EXCELLENT: Within' if peak_gb < GPU_MEMORY_TARGET_GB else '✗ Over'} 20GB")
        assert peak_gb < GPU_MEMORY_BLOCKER_GB

    def test_memory_cleanup_after_generation(self, tmp_path: Path):
        """Repeated generations leave no tensors, no allocator memory and no RSS behind."""
        engine = MusicEngine()
        request = GenerationRequest(prompt="loop, 90 bpm in G major", duration=1.0, model="tiny")
        on_cuda = engine.backend("tiny").device.startswith("cuda")
        for _ in range(2):  # load the model and fill every cache first
            produce_track(request, tmp_path / "warm.wav", engine=engine)
        gc.collect()
        tensors, rss = live_tensors(), rss_bytes()
        allocated = torch.cuda.memory_allocated() if on_cuda else 0
        for index in range(3):
            produce_track(request, tmp_path / f"{index}.wav", engine=engine)
        gc.collect()
        rss_growth_mb = (rss_bytes() - rss) / 2**20
        print(f"\nLive tensors: {tensors} -> {live_tensors()} after 3 generations")
        print(f"RSS growth over 3 generations: {rss_growth_mb:.1f} MiB")
        assert live_tensors() <= tensors, "a generation left tensors alive"
        if on_cuda:
            assert torch.cuda.memory_allocated() <= allocated, "CUDA allocator grew"
        # A generation handles a few MB of arrays and model activations; a per-job leak of the
        # model's state or outputs adds up past this, allocator noise does not.
        assert rss_growth_mb < 24.0
