"""Generation: the synth arranger, the tiny MusicGen on the CPU, real MusicGen on a GPU."""

from __future__ import annotations

import os

try:
    from dgx_music.generation.engine import MusicEngine
    from dgx_music.generation.request import GenerationRequest
except ImportError:  # an old commit without the engine: asv skips the suite
    MusicEngine = None

from .common import SEED, SYNTH_PROMPT, Benchmark, durations

#: Real checkpoint benchmarked on a GPU machine (override with DGX_MUSIC_BENCH_GPU_MODEL).
GPU_MODEL = os.environ.get("DGX_MUSIC_BENCH_GPU_MODEL", "facebook/musicgen-small")


def make_request(model: str, seconds: float) -> GenerationRequest:
    return GenerationRequest(prompt=SYNTH_PROMPT, duration=seconds, model=model, seed=SEED)


class SynthGenerate(Benchmark):
    """The procedural arranger: what the integration tests and demos run."""

    params = [durations([4.0, 16.0], [30.0])]
    param_names = ["seconds"]

    def setup(self, seconds: float) -> None:
        super().setup()
        if MusicEngine is None:
            raise NotImplementedError("dgx_music.generation.engine is missing")
        self.engine = MusicEngine()
        self.request = make_request("synth", seconds)
        self.engine.backend("synth")

    def time_generate(self, seconds: float) -> None:
        self.engine.generate(self.request)


class TinyMusicgenGenerate(Benchmark):
    """The tiny random MusicGen through the real transformers code path, on the CPU.

    Its decoder is tiny, so the figure mostly measures the per-token overhead of transformers'
    generate loop and the EnCodec decode: a regression there shows up here first.
    """

    params = [durations([2.0, 8.0], [30.0])]
    param_names = ["seconds"]

    def setup(self, seconds: float) -> None:
        super().setup()
        if MusicEngine is None:
            raise NotImplementedError("dgx_music.generation.engine is missing")
        os.environ["DGX_MUSIC_DEVICE"] = "cpu"
        self.engine = MusicEngine()
        self.request = make_request("tiny", seconds)
        # Load and run once so neither the load nor the first-call warm-up is timed.
        self.engine.generate(make_request("tiny", 0.5))

    def time_generate(self, seconds: float) -> None:
        self.engine.generate(self.request)

    def peakmem_generate(self, seconds: float) -> None:
        self.engine.generate(self.request)

    def track_realtime_factor(self, seconds: float) -> float:
        """Generation seconds per second of audio (below 1 is faster than real time)."""
        return self.engine.generate(self.request).realtime_factor

    track_realtime_factor.unit = "s/s"


class MusicgenGpuGenerate(Benchmark):
    """A real checkpoint in fp16 on CUDA: the spec's 16 s in < 30 s target. GPU machines only."""

    params = [durations([16.0], [8.0, 30.0])]
    param_names = ["seconds"]
    timeout = 600.0

    def setup(self, seconds: float) -> None:
        super().setup()
        import torch

        if MusicEngine is None or not torch.cuda.is_available():
            raise NotImplementedError("needs a CUDA device")
        os.environ["DGX_MUSIC_DEVICE"] = "cuda"
        self.engine = MusicEngine()
        info = {m.name: m for m in self.engine.available_models()}
        if GPU_MODEL in info and not info[GPU_MODEL].available_offline:
            raise NotImplementedError(f"{GPU_MODEL} weights are not on this machine")
        self.request = make_request(GPU_MODEL, seconds)
        self.engine.generate(make_request(GPU_MODEL, 1.0))

    def time_generate(self, seconds: float) -> None:
        self.engine.generate(self.request)

    def track_realtime_factor(self, seconds: float) -> float:
        """Generation seconds per second of audio."""
        return self.engine.generate(self.request).realtime_factor

    track_realtime_factor.unit = "s/s"

    def track_gpu_peak_memory(self, seconds: float) -> float:
        """Peak CUDA memory allocated during one generation, MiB (spec budget: < 20 GiB)."""
        import torch

        torch.cuda.reset_peak_memory_stats()
        self.engine.generate(self.request)
        return torch.cuda.max_memory_allocated() / 2**20

    track_gpu_peak_memory.unit = "MiB"
