"""A fault-injecting engine for tests that need a model to be slow, to fail, or to count calls.

It implements :class:`~dgx_music.generation.engine.MusicEngine`'s interface and, unless told to
fail, generates with the real backends, so the audio flowing through the pipeline is real. It
exists only to inject faults, the way an in-memory connector implements a real interface.

Five functions build what the fault tests feed it or the pipeline:

- :func:`create_test_audio_array`: a sine as the engines return audio (numpy, channels first);
- :func:`create_mock_generation_result`: a :class:`GenerationResult` without running a model;
- :func:`cuda_out_of_memory`: the exception torch raises when the GPU is full;
- :func:`simulate_cuda_unavailable`: torch sees no CUDA device for the rest of a test;
- :func:`inject_generate_faults`: a loaded model's ``generate`` fails its first N calls.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

from dgx_music.generation.continuation import AudioPrompt
from dgx_music.generation.engine import MusicEngine
from dgx_music.generation.request import GenerationRequest, GenerationResult, ProgressCallback

#: Spec default: how long the mock takes to "generate", seconds.
DEFAULT_GENERATION_DELAY_S = 0.1
#: What torch says when CUDA runs out of memory (shortened).
OOM_MESSAGE = "CUDA out of memory. Tried to allocate 3.50 GiB. GPU 0 has 1.02 GiB free."


def create_test_audio_array(
    duration: float = 1.0,
    sample_rate: int = 32_000,
    channels: int = 2,
    frequency: float = 440.0,
    amplitude: float = 0.5,
) -> np.ndarray:
    """A sine, float32, shape (channels, samples): what an engine hands the exporter.

    Raises
    ------
    ValueError
        A non-positive duration, rate, channel count or frequency, a frequency at or above
        Nyquist, or an amplitude outside (0, 1].
    """
    if duration <= 0:
        raise ValueError(f"duration: {duration} s; must be > 0")
    if sample_rate <= 0 or channels <= 0:
        raise ValueError(f"sample_rate/channels: {sample_rate} Hz, {channels}; must be > 0")
    if not 0 < frequency < sample_rate / 2:
        raise ValueError(f"frequency: {frequency} Hz; must be in (0, {sample_rate / 2}) Hz")
    if not 0 < amplitude <= 1:
        raise ValueError(f"amplitude: {amplitude}; must be in (0, 1]")
    t = np.arange(int(round(duration * sample_rate))) / sample_rate
    tone = (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float32)
    return np.repeat(tone[np.newaxis, :], channels, axis=0)


def create_mock_generation_result(
    request: GenerationRequest,
    *,
    audio: np.ndarray | None = None,
    sample_rate: int = 32_000,
    device: str = "cpu",
    generation_seconds: float = DEFAULT_GENERATION_DELAY_S,
) -> GenerationResult:
    """A :class:`GenerationResult` for ``request`` with a 440 Hz tone of the requested length
    (or ``audio``), as if a model on ``device`` had made it."""
    if audio is None:
        audio = create_test_audio_array(request.duration, sample_rate)
    if audio.ndim != 2:
        raise ValueError(f"audio: shape {audio.shape}; must be (channels, samples)")
    return GenerationResult(
        audio=audio.astype(np.float32),
        sample_rate=sample_rate,
        model=request.model,
        device=device,
        seed=request.seed if request.seed is not None else 0,
        generation_seconds=generation_seconds,
    )


def cuda_out_of_memory(message: str = OOM_MESSAGE) -> torch.cuda.OutOfMemoryError:
    """The exception torch raises when an allocation does not fit on the GPU."""
    return torch.cuda.OutOfMemoryError(message)


def simulate_cuda_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch reports no CUDA device until ``monkeypatch`` is undone (the end of the test), and
    the engine's once-per-process CPU warning is re-armed so the test can see it."""
    from dgx_music.generation import engine

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    monkeypatch.setattr(engine, "_cpu_warning_given", False)


def inject_generate_faults(
    monkeypatch: pytest.MonkeyPatch,
    model: Any,
    fault: Callable[[], BaseException],
    times: int = 1,
) -> list[bool]:
    """Make ``model.generate`` raise ``fault()`` on its first ``times`` calls, then work.

    Returns the list of calls as they happen (True: the call failed), for the test to count.
    """
    if times < 0:
        raise ValueError(f"times: {times}; must be >= 0")
    original = model.generate
    calls: list[bool] = []

    def generate(*args: Any, **kwargs: Any) -> Any:
        failing = len(calls) < times
        calls.append(failing)
        if failing:
            raise fault()
        return original(*args, **kwargs)

    monkeypatch.setattr(model, "generate", generate)
    return calls


class MockMusicGenerationEngine(MusicEngine):
    """A MusicEngine that can stall, fail, and records every request it gets.

    Parameters
    ----------
    generation_delay
        Seconds to wait before generating (0.1 by default, as the spec has it), in ``steps``
        sleeps; after each one progress is reported, which gives a worker the chance to abort.
    steps
        Progress reports during the wait.
    fail_with
        An exception to raise instead of generating (a CUDA OOM, a model bug).
    fail_times
        How many generations fail before it starts succeeding (None: all of them).
    """

    def __init__(
        self,
        generation_delay: float = DEFAULT_GENERATION_DELAY_S,
        *,
        steps: int = 10,
        fail_with: BaseException | None = None,
        fail_times: int | None = None,
        **kwargs: object,
    ) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        if generation_delay < 0:
            raise ValueError(f"generation_delay: {generation_delay} s; must be >= 0")
        if steps < 1:
            raise ValueError(f"steps: {steps}; must be >= 1")
        if fail_times is not None and fail_times < 0:
            raise ValueError(f"fail_times: {fail_times}; must be >= 0 (None: always)")
        self.generation_delay = generation_delay
        self.steps = steps
        self.fail_with = fail_with
        self.fail_times = fail_times
        self.requests: list[GenerationRequest] = []
        self._lock = threading.Lock()

    @property
    def calls(self) -> int:
        return len(self.requests)

    def generate(
        self,
        request: GenerationRequest,
        progress: ProgressCallback | None = None,
        continuation: AudioPrompt | None = None,
    ) -> GenerationResult:
        with self._lock:
            self.requests.append(request)
            failing = self.fail_with is not None and (
                self.fail_times is None or len(self.requests) <= self.fail_times
            )
        if failing:
            assert self.fail_with is not None
            raise self.fail_with
        if self.generation_delay > 0:
            for step in range(self.steps):
                time.sleep(self.generation_delay / self.steps)
                if progress is not None:
                    progress(step + 1, self.steps + 1)
            progress = None  # the wait already reported; the model's own steps would go back
        return super().generate(request, progress=progress, continuation=continuation)

    def generate_audio(
        self, prompt: str, duration: float, **kwargs: object
    ) -> tuple[np.ndarray, int]:
        """(audio (channels, samples) float32, sample rate Hz) from the synth model."""
        fields = {"model": "synth", **kwargs}
        request = GenerationRequest(prompt=prompt, duration=duration, **fields)  # type: ignore[arg-type]
        result = self.generate(request)
        return result.audio, result.sample_rate
