"""Generation: the synth arranger, the tiny MusicGen on the CPU, real MusicGen on a GPU, and
the real-size EnCodec decoding long tracks in chunks."""

from __future__ import annotations

import os
from collections.abc import Callable

try:
    from dgx_music.generation.engine import MusicEngine
except ImportError:  # an old commit without the engine: asv skips the suite
    MusicEngine = None

from .common import (
    MIB,
    TWINS,
    Benchmark,
    configure_process,
    durations,
    is_slow,
    loaded_engine,
    make_request,
    require_cuda,
    sampled_peak,
    torch_peak_mib,
    track,
)

#: Models benchmarked on a GPU machine: the real checkpoints, each skipped when its weights are
#: not on disk, and every twin, which always runs (DGX_MUSIC_BENCH_GPU_MODELS, comma-separated,
#: overrides the list).
GPU_MODELS = [
    name.strip()
    for name in os.environ.get(
        "DGX_MUSIC_BENCH_GPU_MODELS",
        ",".join(
            [
                "facebook/musicgen-small",
                "facebook/musicgen-medium",
                "facebook/musicgen-large",
                "facebook/musicgen-stereo-small",
                *TWINS,
            ]
        ),
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


class TinyMusicgenMemory(TinyMusicgenGenerate):
    """The tiny MusicGen's tensor memory: 2 s in the default suite, 8 and 30 s in slow mode.

    Under torch's profiler a generation runs several times slower: the 8 s clip cost 24 s of
    each commit's gate time, and a per-step growth shows at 2 s (100 steps) as well.
    """

    params = [durations([2.0], [8.0, 30.0])]
    time_generate = None  # type: ignore[assignment]  # timed by TinyMusicgenGenerate

    @track("MiB")
    def track_generate_peak_mib(self, seconds: float) -> float:
        """Tensor memory one generation holds at its peak, MiB (weights excluded; torch's
        profiler, see ``common.torch_peak_mib``)."""
        return torch_peak_mib(lambda: self.engine.generate(self.request))


class TwinBenchmark(Benchmark):
    """Shape twins on the CPU in float32: real-size MusicGen cost without weights.

    musicgen-small's twin for 2 s in the default suite (about 23 s a sample on one core of the
    2-core runner, so few samples); 8 s and the medium twin in slow mode. Their audio is noise:
    only cost is measured.
    """

    params = [
        TWINS[:2] if is_slow() else TWINS[:1],
        durations([2.0], [8.0]),
    ]
    param_names = ["model", "seconds"]
    number = 1
    #: One round of 3 samples, 3 a side in the gate's first pass: too few for asv's Mann-Whitney
    #: test, so asv compares the medians' 99 % intervals instead, which separate a 1.5x slowdown
    #: of a 24 s sample every time (docs/BENCHMARKING.md, "What the new cases cost the gate").
    #: A flagged twin gets the confirmation's interleaved rounds like any other benchmark. No
    #: warm-up call: the engine is warmed once per process (``loaded_engine``), and a warm-up
    #: would cost a whole sample.
    rounds = 1
    repeat = 3
    warmup_time = 0.0
    timeout = 1800.0

    def setup(self, model: str, seconds: float) -> None:
        super().setup()
        if MusicEngine is None:
            raise NotImplementedError("dgx_music.generation.engine is missing")
        os.environ["DGX_MUSIC_DEVICE"] = "cpu"
        try:
            self.engine = loaded_engine(model)
        except Exception as exc:  # an old commit that does not know the twins
            raise NotImplementedError(f"{model} cannot be built here: {exc}") from exc
        self.request = make_request(model, seconds)


class TwinGenerate(TwinBenchmark):
    def time_generate(self, model: str, seconds: float) -> None:
        self.engine.generate(self.request)


class TwinLoopOverhead(TwinBenchmark):
    """Where a twin's decoding time goes. Slow mode only: a ratio of two timings is too noisy
    for the gate, and each figure costs a whole generation."""

    def setup(self, model: str, seconds: float) -> None:
        if not is_slow():
            raise NotImplementedError("slow mode only (DGX_MUSIC_BENCH_SLOW=1)")
        super().setup(model, seconds)

    @track("%")
    def track_loop_overhead_percent(self, model: str, seconds: float) -> float:
        """Share of the decoding loop spent outside the decoder's forward calls, % (the
        sampler, transformers' generate loop, cache bookkeeping), see ``loop_overhead``."""
        return 100 * loop_overhead(self.engine, self.request)


def loop_overhead(engine: MusicEngine, request: object) -> float:
    """The share of one generation's decoding loop that is not the decoder's forward calls.

    Forward hooks time every decoder call; the text encoder's call and EnCodec's decoder are
    timed the same way and taken out of the wall time first, so what remains is the loop:
    its forward calls plus everything between them (and the codebook look-up before EnCodec's
    decoder, a few milliseconds, which makes the figure a little pessimistic).
    """
    import time

    backend = engine.backend(request.model)  # type: ignore[attr-defined]
    model = backend._model
    spans: dict[str, float] = {"decoder": 0.0, "other": 0.0}
    started: dict[str, float] = {}

    def timing(part: str, key: str) -> tuple[Callable[..., None], Callable[..., None]]:
        def before(*args: object) -> None:
            started[key] = time.perf_counter()

        def after(*args: object) -> None:
            spans[part] += time.perf_counter() - started.pop(key)

        return before, after

    handles = []
    for module, part, key in (
        (model.decoder, "decoder", "decoder"),
        (model.text_encoder, "other", "text"),
        (model.audio_encoder.decoder, "other", "codec"),
    ):
        before, after = timing(part, key)
        handles.append(module.register_forward_pre_hook(before))
        handles.append(module.register_forward_hook(after))
    try:
        wall = time.perf_counter()
        engine.generate(request)  # type: ignore[arg-type]
        wall = time.perf_counter() - wall
    finally:
        for handle in handles:
            handle.remove()
    loop = wall - spans["other"]
    return (loop - spans["decoder"]) / loop


def nvml_used_bytes(device_index: int) -> Callable[[], int]:
    """A gauge of the device memory in use, as NVML (and ``nvidia-smi``) reports it: every
    process, the CUDA context and torch's cached blocks included."""
    import pynvml

    pynvml.nvmlInit()
    handle = pynvml.nvmlDeviceGetHandleByIndex(device_index)
    return lambda: pynvml.nvmlDeviceGetMemoryInfo(handle).used


class MusicgenGpuGenerate(Benchmark):
    """Real checkpoints and their shape twins in fp16 on CUDA: the spec's 16 s in < 30 s and
    < 20 GiB targets, and the twins' real-time factor and memory (no weights needed).

    GPU machines only: each (model, seconds) case is skipped without CUDA or, for a real
    checkpoint, without its weights on disk (DGX_MUSIC_MODEL_DIR or the Hugging Face cache).
    """

    params = [GPU_MODELS, durations([16.0], [8.0, 30.0])]
    param_names = ["model", "seconds"]
    timeout = 900.0
    number = 1
    repeat = (3, 5, 300.0)

    def setup(self, model: str, seconds: float) -> None:
        require_cuda()
        super().setup()
        if MusicEngine is None:
            raise NotImplementedError("dgx_music.generation.engine is missing")
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


class BatchIdentityGpu(Benchmark):
    """Share of jobs whose tokens in a batch of 4 equal their tokens alone, %, on CUDA in fp16.

    On the CPU in float32 every job is identical (a test checks 16); on a GPU, batched fp16
    matrix products may round differently and flip a near-tie between two tokens, after which
    the job's tokens diverge. 16 jobs of mixed prompts, durations (0.5-2 s) and seeds on the
    small twin, 4 batches of 4. GPU machines only.
    """

    params = [TWINS[:1]]
    param_names = ["model"]
    number = 1
    repeat = 1
    timeout = 1800.0

    def setup(self, model: str) -> None:
        require_cuda()
        super().setup()
        if MusicEngine is None:
            raise NotImplementedError("dgx_music.generation.engine is missing")
        os.environ["DGX_MUSIC_DEVICE"] = "cuda"
        self.engine = loaded_engine(model)

    @track("%")
    def track_identical_to_alone_percent(self, model: str) -> float:
        """Jobs (of 16) whose codes in a batch of 4 equal their solo codes, %."""
        import dataclasses

        import numpy as np

        base = make_request(model, 1.0)
        requests = [
            dataclasses.replace(
                base,
                prompt=f"{base.prompt}, take {index}" * (1 + index % 3),
                duration=0.5 + 0.5 * (index % 4),
                seed=index,
            )
            for index in range(16)
        ]
        alone = [self.engine.generate(request).codes for request in requests]
        same = 0
        for start in range(0, 16, 4):
            outcomes = self.engine.generate_batch(requests[start : start + 4])
            for offset, outcome in enumerate(outcomes):
                same += int(np.array_equal(outcome.codes, alone[start + offset]))
        return 100 * same / 16


class CodecDecodeMemory(Benchmark):
    """Decoding a long track's tokens with the real-size EnCodec (musicgen-small's twin), in
    overlapping chunks (``dgx_music.generation.codec``): its peak tensor memory must not grow
    with the track. 30 s and 120 s in the default suite, 300 s in slow mode; the codes are
    seeded random, since a decode's memory does not depend on their values.

    Each decode runs once per commit (``setup_cache``): about 0.4 s per second of audio on one
    core of the 2-core runner, so the default suite pays about a minute here.
    """

    params = [durations([30.0, 120.0], [300.0])]
    param_names = ["seconds"]
    timeout = 1800.0

    def setup_cache(self) -> dict[float, float]:
        configure_process()
        try:
            import torch

            from dgx_music.generation import codec
            from dgx_music.generation.twins import build_twin
        except ImportError:
            # An old commit without the chunked decode. Not None: asv passes a None cache to
            # nothing, and ``setup`` would then miss its argument instead of skipping.
            return {}
        model, _ = build_twin(TWINS[0], dtype=torch.float32)
        generator = torch.Generator().manual_seed(0)
        peaks: dict[float, float] = {}
        with torch.inference_mode():
            for seconds in self.params[0]:
                codes = torch.randint(0, 2048, (4, round(50 * seconds)), generator=generator)
                peaks[seconds] = torch_peak_mib(lambda codes=codes: codec.decode(model, codes))
        return peaks

    def setup(self, peaks: dict[float, float], seconds: float) -> None:
        if not peaks:
            raise NotImplementedError("dgx_music.generation.codec is missing")

    @track("MiB")
    def track_decode_peak_mib(self, peaks: dict[float, float], seconds: float) -> float:
        """Tensor memory the decode holds at its peak, MiB (torch's profiler; the output
        buffer included)."""
        return peaks[seconds]

    @track("x")
    def track_decode_peak_vs_30s(self, peaks: dict[float, float], seconds: float) -> float:
        """Peak of this decode over the peak of decoding 30 s (target: at most 1.2 at 120 s)."""
        return peaks[seconds] / peaks[30.0]


class SlowTinyBenchmark(Benchmark):
    """The tiny MusicGen on the CPU for cases of minutes (slow mode only): 2 samples, one round,
    no warm-up call (``loaded_engine`` warms the engine once per process)."""

    number = 1
    repeat = 2
    rounds = 1
    warmup_time = 0.0
    timeout = 1800.0

    def setup(self, *params: object) -> None:
        if not is_slow():
            raise NotImplementedError("slow mode only (DGX_MUSIC_BENCH_SLOW=1)")
        super().setup()
        if MusicEngine is None:
            raise NotImplementedError("dgx_music.generation.engine is missing")
        os.environ["DGX_MUSIC_DEVICE"] = "cpu"
        self.engine = loaded_engine("tiny")


class TinyLongform(SlowTinyBenchmark):
    """The tiny MusicGen past its 30 s window, in windows: time should grow linearly with the
    length, each window costing the same."""

    params = [[30.0, 120.0, 300.0]]
    param_names = ["seconds"]

    def setup(self, seconds: float) -> None:
        super().setup(seconds)
        self.request = make_request("tiny", seconds)

    def time_generate(self, seconds: float) -> None:
        self.engine.generate(self.request)


class LongShortBatching(SlowTinyBenchmark):
    """Long jobs beside short ones: 4 tiny jobs of 40 s and 4 of 5 s, generated as one batch of 8
    (``mixed``) or as the 4 short, then the 4 long (``grouped``, what a worker does: it batches a
    job only with jobs of as many windows). Jobs per minute = 480 / this.
    """

    params = [["mixed", "grouped"]]
    param_names = ["policy"]

    def setup(self, policy: str) -> None:
        super().setup(policy)
        short = [make_request("tiny", 5.0) for _ in range(4)]
        long = [make_request("tiny", 40.0) for _ in range(4)]
        self.batches = [short + long] if policy == "mixed" else [short, long]

    def time_generate(self, policy: str) -> None:
        for batch in self.batches:
            outcomes = self.engine.generate_batch(batch)
            assert not any(isinstance(outcome, Exception) for outcome in outcomes), outcomes
