"""A fault-injecting engine for tests that need a model to be slow, to fail, or to count calls.

It implements :class:`~dgx_music.generation.engine.MusicEngine`'s interface and, unless told to
fail, generates with the real backends, so the audio flowing through the pipeline is real. It
exists only to inject faults, the way an in-memory connector implements a real interface.
"""

from __future__ import annotations

import threading
import time

import numpy as np

from dgx_music.generation.engine import MusicEngine
from dgx_music.generation.request import GenerationRequest, GenerationResult, ProgressCallback


class MockMusicGenerationEngine(MusicEngine):
    """A MusicEngine that can stall, fail, and records every request it gets.

    Parameters
    ----------
    generation_delay
        Seconds to wait before generating, in ``steps`` sleeps; after each one progress is
        reported, which gives a worker the chance to abort there.
    steps
        Progress reports during the wait.
    fail_with
        An exception to raise instead of generating (a CUDA OOM, a model bug).
    fail_times
        How many generations fail before it starts succeeding (None: all of them).
    """

    def __init__(
        self,
        generation_delay: float = 0.0,
        *,
        steps: int = 10,
        fail_with: BaseException | None = None,
        fail_times: int | None = None,
        **kwargs: object,
    ) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
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
        self, request: GenerationRequest, progress: ProgressCallback | None = None
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
        return super().generate(request, progress=progress)

    def generate_audio(
        self, prompt: str, duration: float, **kwargs: object
    ) -> tuple[np.ndarray, int]:
        """(audio (channels, samples) float32, sample rate Hz) from the synth model."""
        fields = {"model": "synth", **kwargs}
        request = GenerationRequest(prompt=prompt, duration=duration, **fields)  # type: ignore[arg-type]
        result = self.generate(request)
        return result.audio, result.sample_rate
