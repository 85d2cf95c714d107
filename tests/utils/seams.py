"""Seam detectors: a click where two pieces of audio meet shows as an outsized sample step."""

from __future__ import annotations

import numpy as np

RATE = 32_000  # Hz


def largest_step(audio: np.ndarray, start: int, stop: int) -> float:
    """Largest sample-to-sample change of (channels, n) ``audio`` between samples ``start`` and
    ``stop`` (steps whose both samples lie inside), over every channel."""
    start, stop = max(start, 0), min(stop, audio.shape[-1])
    if stop - start < 2:
        return 0.0
    return float(np.max(np.abs(np.diff(audio[:, start:stop], axis=-1))))


def join_steps(
    audio: np.ndarray,
    join: int,
    *,
    sample_rate: int = RATE,
    near_seconds: float = 0.05,
    before_seconds: float = 2.0,
) -> tuple[float, float]:
    """(largest step within ``near_seconds`` of sample ``join``, largest step in the
    ``before_seconds`` before that zone): a seamless join has the first no larger than the
    second."""
    near = round(near_seconds * sample_rate)
    before = round(before_seconds * sample_rate)
    at_join = largest_step(audio, join - near, join + near)
    reference = largest_step(audio, join - near - before, join - near)
    return at_join, reference


def has_seam(audio: np.ndarray, join: int, *, sample_rate: int = RATE) -> bool:
    """Whether the join at sample ``join`` steps further than anything in the 2 s before it."""
    at_join, reference = join_steps(audio, join, sample_rate=sample_rate)
    return at_join > reference
