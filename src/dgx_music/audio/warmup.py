"""librosa's compiled code, made ready once per process before the tempo and key analysis runs.

Every path into librosa (:func:`dgx_music.audio.tempo.estimate_tempo`,
:func:`dgx_music.audio.key.estimate_key`) calls :func:`warm_up` first, so a process's first use
of librosa's numba code (which loads it from numba's on-disk cache, or compiles and writes it
there) happens while no other process of this environment does the same: numba does not lock
its cache itself, and concurrent writers corrupt it (see :mod:`dgx_music.audio.numba_cache`).
"""

from __future__ import annotations

import logging
import threading
import time

import numpy as np

from dgx_music.audio import numba_cache
from dgx_music.audio.mono import ANALYSIS_SAMPLE_RATE, to_analysis_mono

logger = logging.getLogger(__name__)

#: Set once this process has used librosa's compiled code.
_compiled = threading.Event()
_compile_lock = threading.RLock()
_compiling = False  # True while the holder of _compile_lock runs the warm-up clip


def warm_up(sample_rate: int = 32_000) -> None:
    """Compile (or load from numba's cache) librosa's code for the analysis, once per process.

    Call once per process before anything is timed: the first use compiles for tens of seconds
    on a small CPU (a second or two when numba's on-disk cache is warm), later calls take
    microseconds. The analysis does this itself on first use; calling it early only moves the
    wait. Other processes of this environment doing the same wait their turn (numba's cache is
    not safe for concurrent writers); threads of one process wait on a thread lock, and the
    warm-up's own calls back into the analysis pass through.

    Parameters
    ----------
    sample_rate
        Rate of the clip, Hz; use the rate later calls will see so the same resampler runs.
    """
    global _compiling
    if _compiled.is_set():
        return
    with _compile_lock:
        if _compiled.is_set() or _compiling:
            return
        _compiling = True
        try:
            started = time.perf_counter()
            with numba_cache.exclusive():
                _analyse(_clip(sample_rate), sample_rate)
            _compiled.set()
            logger.debug(
                "metadata analysis warmed up",
                extra={"action": "metadata_warm_up", "seconds": time.perf_counter() - started},
            )
        finally:
            _compiling = False


def _analyse(clip: np.ndarray, sample_rate: int) -> None:
    # Imported here: both modules call warm_up first, so importing them above would be a cycle.
    from dgx_music.audio.key import estimate_key
    from dgx_music.audio.tempo import estimate_tempo

    mono = to_analysis_mono(clip, sample_rate)
    estimate_tempo(mono, ANALYSIS_SAMPLE_RATE)
    estimate_key(mono, ANALYSIS_SAMPLE_RATE)


def _clip(sample_rate: int) -> np.ndarray:
    """2 s of stereo A3 with clicks at 120 BPM: reaches every librosa call of the analysis."""
    t = np.arange(2 * sample_rate) / sample_rate
    clicks = (np.mod(t, 0.5) < 0.01).astype(np.float64)
    tone = 0.3 * np.sin(2 * np.pi * 220.0 * t)
    return np.stack([tone + 0.5 * clicks, tone - 0.5 * clicks])
