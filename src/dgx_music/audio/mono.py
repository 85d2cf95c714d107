"""The signal tempo and key are read from: one channel at 22.05 kHz, long enough, not silent."""

from __future__ import annotations

import librosa
import numpy as np

from dgx_music.audio import numba_cache

#: Sample rate tempo and key are analysed at, Hz.
ANALYSIS_SAMPLE_RATE = 22_050
#: Audio shorter than this has no tempo or key, seconds.
MIN_ANALYSIS_DURATION = 0.5


def warm_up() -> None:
    """Import librosa's resampler under the numba cache lock, once per process.

    soxr does the resampling and has no numba code, but the first ``librosa.resample`` imports
    ``librosa.core.audio`` and ``librosa.util.utils``, whose vectorised functions (declared with
    their signatures and ``cache=True``) compile and write numba's cache as they are imported.
    Every call of :func:`to_analysis_mono` that resamples does this first.
    """
    numba_cache.first_use(
        __name__, lambda: to_analysis_mono(np.zeros((1, 3_200), np.float32), 32_000)
    )


def to_analysis_mono(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Channels (channels, samples) averaged to float32 mono at :data:`ANALYSIS_SAMPLE_RATE`."""
    mono = audio.mean(axis=0)
    if sample_rate != ANALYSIS_SAMPLE_RATE:
        warm_up()
        mono = librosa.resample(
            mono, orig_sr=sample_rate, target_sr=ANALYSIS_SAMPLE_RATE, res_type="soxr_hq"
        )
    analysis: np.ndarray = mono.astype(np.float32)
    return analysis


def too_short_or_silent(mono: np.ndarray, sample_rate: int) -> bool:
    """Whether a mono signal is too short or too quiet to hold a tempo or a key."""
    return mono.shape[-1] < MIN_ANALYSIS_DURATION * sample_rate or not np.any(mono)


def warm_up_clip() -> np.ndarray:
    """2 s of A3 with clicks at 120 BPM, mono at :data:`ANALYSIS_SAMPLE_RATE`: reaches every
    librosa call of the tempo and key analysis."""
    t = np.arange(2 * ANALYSIS_SAMPLE_RATE) / ANALYSIS_SAMPLE_RATE
    clicks = (np.mod(t, 0.5) < 0.01).astype(np.float64)
    clip: np.ndarray = (0.3 * np.sin(2 * np.pi * 220.0 * t) + 0.5 * clicks).astype(np.float32)
    return clip
