"""Generation: the synth arranger, the tiny MusicGen on the CPU, real MusicGen on a GPU."""

from __future__ import annotations

import os
from collections.abc import Callable

try:
    from dgx_music.generation.engine import MusicEngine
except ImportError:  # an old commit without the engine: asv skips the suite
    MusicEngine = None

from .common import (
    MIB,
    Benchmark,
    durations,
    loaded_engine,
    make_request,
    sampled_peak,
    torch_peak_mib,
    track,
)

#: Real checkpoints benchmarked on a GPU machine, each skipped when its weights are not on disk
#: (DGX_MUSIC_BENCH_GPU_MODELS, comma-separated, overrides the list).
GPU_MODELS = [
    name.strip()
    for name in os.environ.get(
        "DGX_MUSIC_BENCH_GPU_MODELS",
        "facebook/musicgen-small,facebook/musicgen-medium,"
        "facebook/musicgen-large,facebook/musicgen-stereo-small",
    ).split(",")
    if name.strip()
]
#: How often the NVML sampler reads the device's used memory, seconds.
NVML_INTERVAL = 0.005


class SynthGenerate(Benchmark):
    """The procedural arranger: what the integration tests and demos run."""

    params = [durations([4.0, 16.0], [30.0])]
    param_names = ["seconds"]

    def setup(self, seconds: float) -> None:
        super().setup()
        if MusicEngine is None:
            raise NotImplementedError("dgx_music.generation.engine is missing")
        self.engine = loaded_engine("synth")
        self.request = make_request("synth", seconds)

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
        self.engine = loaded_engine("tiny")
        self.request = make_request("tiny", seconds)

    def time_generate(self, seconds: float) -> None:
        self.engine.generate(self.request)

    @track("MiB")
    def track_generate_peak_mib(self, seconds: float) -> float:
        """Tensor memory one generation holds at its peak, MiB (weights excluded; torch's
        profiler, see ``common.torch_peak_mib``)."""
        return torch_peak_mib(lambda: self.engine.generate(self.request))


def nvml_used_bytes(device_index: int) -> Callable[[], int]:
    """A gauge of the device memory in use, as NVML (and ``nvidia-smi``) reports it: every
    process, the CUDA context and torch's cached blocks included."""
    import pynvml

    pynvml.nvmlInit()
    handle = pynvml.nvmlDeviceGetHandleByIndex(device_index)
    return lambda: pynvml.nvmlDeviceGetMemoryInfo(handle).used


class MusicgenGpuGenerate(Benchmark):
    """Real checkpoints in fp16 on CUDA: the spec's 16 s in < 30 s and < 20 GiB targets.

    GPU machines only: each (model, seconds) case is skipped without CUDA or without that
    checkpoint's weights on disk (DGX_MUSIC_MODEL_DIR or the Hugging Face cache).
    """

    params = [GPU_MODELS, durations([16.0], [8.0, 30.0])]
    param_names = ["model", "seconds"]
    timeout = 900.0
    number = 1
    repeat = (3, 5, 300.0)

    def setup(self, model: str, seconds: float) -> None:
        super().setup()
        import torch

        if MusicEngine is None or not torch.cuda.is_available():
            raise NotImplementedError("needs a CUDA device")
        os.environ["DGX_MUSIC_DEVICE"] = "cuda"
        self.engine = loaded_engine(model)
        self.request = make_request(model, seconds)

    def time_generate(self, model: str, seconds: float) -> None:
        """Real-time factor = this / seconds (the spec: 16 s in < 30 s, i.e. below 1.9)."""
        self.engine.generate(self.request)

    @track("MiB")
    def track_gpu_peak_memory(self, model: str, seconds: float) -> float:
        """Peak CUDA memory torch's allocator held during one generation, MiB (weights
        included; spec budget < 20 GiB)."""
        import torch

        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        self.engine.generate(self.request)
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() / MIB

    @track("MiB")
    def track_nvml_peak_memory(self, model: str, seconds: float) -> float:
        """Device memory in use at the peak of one generation, MiB, as NVML reports it (all
        processes, caching allocator and CUDA context included): what ``nvidia-smi`` shows."""
        import torch

        def stage() -> None:
            self.engine.generate(self.request)
            torch.cuda.synchronize()

        torch.cuda.synchronize()
        _, peak = sampled_peak(nvml_used_bytes(torch.cuda.current_device()), stage, NVML_INTERVAL)
        return peak / MIB
