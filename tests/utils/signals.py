"""Seeded test signals: tones, noise and a drum loop, as (channels, samples) float64 arrays."""

from __future__ import annotations

import numpy as np

RATE = 32_000  # Hz


def sine(
    seconds: float = 1.0,
    frequency: float = 440.0,
    amplitude: float = 0.5,
    sample_rate: int = RATE,
    channels: int = 2,
) -> np.ndarray:
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    tone = amplitude * np.sin(2 * np.pi * frequency * t)
    return np.repeat(tone[np.newaxis, :], channels, axis=0)


def noise(
    seconds: float = 1.0,
    rms: float = 0.1,
    sample_rate: int = RATE,
    channels: int = 2,
    seed: int = 0,
) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(0.0, rms, (channels, int(round(seconds * sample_rate))))


def drum_loop(
    seconds: float = 8.0, bpm: float = 120.0, sample_rate: int = RATE, seed: int = 0
) -> np.ndarray:
    """Kick on odd beats, snare on even beats, closed hats on eighths; stereo."""
    rng = np.random.default_rng(seed)
    frames = int(round(seconds * sample_rate))
    out = np.zeros(frames)

    def place(at_s: float, hit: np.ndarray) -> None:
        start = int(at_s * sample_rate)
        stop = min(frames, start + hit.size)
        if start < frames:
            out[start:stop] += hit[: stop - start]

    t_kick = np.arange(int(0.25 * sample_rate)) / sample_rate
    kick = np.sin(2 * np.pi * (50 + 100 * np.exp(-t_kick * 30)) * t_kick) * np.exp(-t_kick * 12)
    t_snare = np.arange(int(0.2 * sample_rate)) / sample_rate
    snare = (rng.normal(0, 0.5, t_snare.size) + 0.5 * np.sin(2 * np.pi * 180 * t_snare)) * np.exp(
        -t_snare * 20
    )
    t_hat = np.arange(int(0.05 * sample_rate)) / sample_rate
    hat = rng.normal(0, 0.2, t_hat.size) * np.exp(-t_hat * 80)
    beat_s = 60.0 / bpm
    for beat in range(int(seconds / beat_s) + 1):
        place(beat * beat_s, kick if beat % 2 == 0 else snare)
        place(beat * beat_s, hat)
        place((beat + 0.5) * beat_s, hat)
    return np.stack([out, 0.9 * out]) * 0.5


def clicks(seconds: float = 8.0, per_second: float = 1.0, sample_rate: int = RATE) -> np.ndarray:
    """Single-sample impulses: the sparsest, spikiest material there is."""
    frames = int(round(seconds * sample_rate))
    out = np.zeros((2, frames))
    out[:, :: int(sample_rate / per_second)] = 0.5
    return out
