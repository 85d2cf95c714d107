"""A fault-injecting engine for tests that need a model to be slow, fail, or count its calls.

It implements :class:`~dgx_music.generation.engine.MusicEngine`'s interface and, unless told to
fail, generates with the real ``synth`` backend, so the audio flowing through the pipeline is
real music-like material with a known tempo and key. It exists only to inject faults, the way an
in-memory connector implements a real interface.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np

from dgx_music.generation.engine import MusicEngine
from dgx_music.generation.request import GenerationRequest, GenerationResult, ProgressCallback


class MockMusicGenerationEngine(MusicEngine):
    """A MusicEngine that renders with ``synth`` and can delay, fail, or record calls.

    Parameters
    ----------
    generation_delay
        Extra seconds to sleep per generation, spread over the progress steps.
    fail_with
        A factory for the exception to raise instead of generating (e.g. a CUDA OOM).
    fail_times
        How many generations fail before it starts succeeding (None: all of them).
    """

    def __init__(
        self,
        generation_delay: float = 0.0,
        *,
        fail_with: Callable[[], BaseException] | None = None,
        fail_times: int | None = None,
    ) -> None:
        super().__init__()
        self.generation_delay = generation_delay
        self.fail_with = fail_with
        self.fail_times = fail_times
        self.requests: list[GenerationRequest] = []
        self._lock = threading.Lock()

    @property
    def calls(self) -> int:
        return len(self.requests)

    def generate(
        self, request: GenerationRequest, progress: ProgressCallback | None = None
    ) -> GenerationResult:
        with self._lock:
            self.requests.append(request)
            failing = self.fail_with is not None and (
                self.fail_times is None or len(self.requests) <= self.fail_times
            )
        if failing:
            assert self.fail_with is not None
            raise self.fail_with()
        steps = 10
        for step in range(steps):
            if progress is not None:
                progress(step, steps)
            time.sleep(self.generation_delay / steps)
        synth_request = GenerationRequest(**{**request.to_dict(), "model": "synth"})
        result = super().generate(synth_request, progress=progress)
        return GenerationResult(
            audio=result.audio,
            sample_rate=result.sample_rate,
            model=request.model,
            device=result.device,
            seed=result.seed,
            generation_seconds=result.generation_seconds + self.generation_delay,
            reported=result.reported,
        )

    def generate_audio(
        self, prompt: str, duration: float, **kwargs: object
    ) -> tuple[np.ndarray, int]:
        """(audio (channels, samples) float32, sample rate Hz) for a prompt and a duration."""
        request = GenerationRequest(prompt=prompt, duration=duration, model="synth", **kwargs)  # type: ignore[arg-type]
        result = self.generate(request)
        return result.audio, result.sample_rate
