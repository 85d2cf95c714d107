"""Metadata of an audio array: loudness, peaks, level statistics, stereo image, tempo and key.

:func:`analyze` gathers what the other modules measure: loudness and loudness range from
:mod:`dgx_music.audio.loudness` (ITU-R BS.1770-4, EBU Tech 3342), the true peak from
:mod:`dgx_music.audio.truepeak` (BS.1770-4 Annex 2), tempo from :mod:`dgx_music.audio.tempo` and
key from :mod:`dgx_music.audio.key`; the level statistics and the stereo image are computed here.

Arrays are float, shaped (channels, samples); a 1-D array is mono. Level values are relative to
digital full scale (1.0): a full-scale sine has a sample peak of 0 dBFS and an RMS of -3.01 dBFS.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from dgx_music.audio import key, mono, tempo, truepeak
from dgx_music.audio.calibration import FLAG_KEY_UNCERTAIN, FLAG_TEMPO_UNCERTAIN, UNCERTAIN_BELOW
from dgx_music.audio.loudness import CHANNEL_WEIGHTS, integrated_loudness, loudness_range
from dgx_music.audio.mono import ANALYSIS_SAMPLE_RATE, MIN_ANALYSIS_DURATION, to_analysis_mono
from dgx_music.errors import InvalidAudioError

#: Largest channel count accepted (BS.1770-4 weights up to five channels).
MAX_CHANNELS = len(CHANNEL_WEIGHTS)
#: Lowest sample rate accepted, Hz (the K-weighting shelf sits at 1.5 kHz).
MIN_SAMPLE_RATE = 8_000


@dataclass(frozen=True, kw_only=True)
class AudioMetadata:
    """Facts about one clip. ``None`` marks a value that is undefined for this audio.

    Attributes
    ----------
    duration_s
        Length, seconds.
    sample_rate
        Sample rate, Hz.
    channels
        Channel count.
    integrated_lufs
        Integrated loudness, LUFS (ITU-R BS.1770-4); ``None`` for silence or audio shorter than
        one 400 ms gating block.
    loudness_range_lu
        Loudness range, LU (EBU Tech 3342); ``None`` for audio shorter than 3 s or with no
        short-term block above the gates.
    sample_peak
        Largest absolute sample value, linear (1.0 = full scale).
    sample_peak_dbfs
        Sample peak, dBFS; ``None`` for silence.
    true_peak_dbtp
        True peak, dBTP (BS.1770-4 Annex 2, 4x oversampling); ``None`` for silence.
    rms_dbfs
        RMS level over all channels, dBFS (a full-scale sine is -3.01 dBFS); ``None`` for silence.
    crest_factor_db
        Sample peak over RMS, dB; ``None`` for silence.
    stereo_balance_db
        RMS of the left channel over RMS of the right, dB (positive: left louder); 0 for mono and
        for silence, ``None`` when exactly one channel is silent.
    channel_correlation
        Pearson correlation of left and right, -1..1; 1 for mono, ``None`` when a channel is
        constant (e.g. silent).
    tempo_bpm
        Estimated tempo, BPM; ``None`` for silence, audio shorter than 0.5 s, and audio with
        neither a pulse (:data:`dgx_music.audio.tempo.MIN_PULSE`) nor a key, such as noise.
    tempo_confidence
        Chance that the tempo is right (within 2 %, or half or double it), 0..1, calibrated on
        real music (:mod:`dgx_music.audio.calibration`); 0 when ``tempo_bpm`` is ``None``.
    key
        Estimated key, e.g. ``"A minor"`` (see :data:`dgx_music.audio.notes.KEY_NAMES`);
        ``None`` for silence, audio shorter than 0.5 s, and atonal audio such as noise
        (nearly flat chroma).
    key_confidence
        Chance that the key is exactly right, 0..1, calibrated on real music; 0 when ``key`` is
        ``None``.
    """

    duration_s: float
    sample_rate: int
    channels: int
    integrated_lufs: float | None
    loudness_range_lu: float | None
    sample_peak: float
    sample_peak_dbfs: float | None
    true_peak_dbtp: float | None
    rms_dbfs: float | None
    crest_factor_db: float | None
    stereo_balance_db: float | None
    channel_correlation: float | None
    tempo_bpm: float | None
    tempo_confidence: float
    key: str | None
    key_confidence: float

    @property
    def flags(self) -> tuple[str, ...]:
        """``tempo_uncertain`` and ``key_uncertain`` for a tempo or key that is given with a
        confidence below :data:`dgx_music.audio.calibration.UNCERTAIN_BELOW`."""
        found = []
        if self.tempo_bpm is not None and self.tempo_confidence < UNCERTAIN_BELOW:
            found.append(FLAG_TEMPO_UNCERTAIN)
        if self.key is not None and self.key_confidence < UNCERTAIN_BELOW:
            found.append(FLAG_KEY_UNCERTAIN)
        return tuple(found)

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON-safe values: plain floats, ints and strings, ``None`` for NaN/inf."""
        result: dict[str, Any] = {}
        for name, value in dataclasses.asdict(self).items():
            if isinstance(value, float | np.floating):
                value = float(value) if math.isfinite(value) else None
            result[name] = value
        return result


def _as_channels(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Check the input and return it as float64 shaped (channels, samples)."""
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int | np.integer):
        raise InvalidAudioError(f"sample_rate must be an integer number of Hz, got {sample_rate!r}")
    if sample_rate < MIN_SAMPLE_RATE:
        raise InvalidAudioError(
            f"sample_rate must be at least {MIN_SAMPLE_RATE} Hz (the K-weighting filter needs "
            f"it), got {sample_rate} Hz"
        )
    array = np.asarray(audio)
    if not np.issubdtype(array.dtype, np.floating):
        raise InvalidAudioError(
            f"audio must be a float array (full scale = 1.0), got dtype {array.dtype}"
        )
    if array.ndim == 1:
        array = array[np.newaxis, :]
    if array.ndim != 2 or not 1 <= array.shape[0] <= MAX_CHANNELS:
        raise InvalidAudioError(
            f"audio must be shaped (channels, samples) with 1..{MAX_CHANNELS} channels, "
            f"or 1-D for mono; got shape {np.shape(audio)}"
        )
    finite = np.isfinite(array)
    if not finite.all():
        bad = int(array.size - np.count_nonzero(finite))
        raise InvalidAudioError(
            f"audio holds {bad} NaN or infinite sample(s); the model output is corrupt"
        )
    return array.astype(np.float64, copy=False)


def _db(ratio: float, *, power: bool = False) -> float | None:
    if ratio <= 0.0:
        return None
    return (10.0 if power else 20.0) * math.log10(ratio)


def true_peak(audio: np.ndarray) -> float:
    """True peak, linear, per ITU-R BS.1770-4 Annex 2 (the exporter's 4x oversampled measure).

    Never below the sample peak: the original samples count as well as the interpolated ones.
    Only the blocks that could hold the peak are oversampled (:func:`truepeak.true_peak`, equal
    to the maximum of the whole-signal envelope): a third of a 16 s analysis went to
    oversampling all of it.
    """
    if audio.shape[-1] == 0:
        return 0.0
    return max(truepeak.true_peak(audio), float(np.max(np.abs(audio))))


def analyze(audio: np.ndarray, sample_rate: int) -> AudioMetadata:
    """Measure loudness, peaks, level, stereo image, tempo and key of an array in memory.

    Parameters
    ----------
    audio
        Float samples, full scale 1.0, shaped (channels, samples) with 1..5 channels, or 1-D for
        mono. Not modified.
    sample_rate
        Sample rate, Hz.

    Returns
    -------
    AudioMetadata
        Every field is defined for any finite input, including silence and empty arrays
        (undefined values are ``None``).

    Raises
    ------
    InvalidAudioError
        When the audio holds NaN or infinite values, is not a float array, or has an unusable
        shape.
    """
    samples = _as_channels(audio, sample_rate)
    n_channels, n_samples = samples.shape
    has_samples = n_samples > 0

    peak = float(np.max(np.abs(samples))) if has_samples else 0.0
    channel_ms = np.mean(samples**2, axis=1) if has_samples else np.zeros(n_channels)
    mean_square = float(channel_ms.mean())

    balance: float | None = 0.0
    correlation: float | None = 1.0
    if n_channels >= 2:
        left, right = float(channel_ms[0]), float(channel_ms[1])
        if left > 0 and right > 0:
            balance = 10.0 * math.log10(left / right)
        elif left > 0 or right > 0:
            balance = None
        correlation = _correlation(samples[0], samples[1])

    beat, found = _estimates(samples, sample_rate, peak)

    rms_dbfs = _db(mean_square, power=True)
    peak_dbfs = _db(peak)
    return AudioMetadata(
        duration_s=n_samples / sample_rate,
        sample_rate=int(sample_rate),
        channels=n_channels,
        integrated_lufs=integrated_loudness(samples, sample_rate) if peak > 0 else None,
        loudness_range_lu=loudness_range(samples, sample_rate) if peak > 0 else None,
        sample_peak=peak,
        sample_peak_dbfs=peak_dbfs,
        true_peak_dbtp=_db(true_peak(samples)) if peak > 0 else None,
        rms_dbfs=rms_dbfs,
        crest_factor_db=None if rms_dbfs is None or peak_dbfs is None else peak_dbfs - rms_dbfs,
        stereo_balance_db=balance,
        channel_correlation=correlation,
        tempo_bpm=beat.bpm,
        tempo_confidence=beat.confidence,
        key=found.name,
        key_confidence=found.confidence,
    )


def tempo_and_key(
    audio: np.ndarray, sample_rate: int
) -> tuple[float | None, float, str | None, float]:
    """Only the tempo and key fields of :func:`analyze`, computed exactly as it computes them.

    For callers that need nothing else (the accuracy tests run it over a whole corpus).

    Returns
    -------
    tuple
        ``(tempo_bpm, tempo_confidence, key, key_confidence)`` as in :class:`AudioMetadata`.

    Raises
    ------
    InvalidAudioError
        As :func:`analyze`.
    """
    beat, found = estimates(audio, sample_rate)
    return beat.bpm, beat.confidence, found.name, found.confidence


def estimates(audio: np.ndarray, sample_rate: int) -> tuple[tempo.TempoEstimate, key.KeyEstimate]:
    """The tempo and key estimates behind :func:`analyze`'s fields, with the evidence their
    confidences were calibrated from (``python -m benchmarks.analysis_accuracy calibrate``).

    Raises
    ------
    InvalidAudioError
        As :func:`analyze`.
    """
    samples = _as_channels(audio, sample_rate)
    peak = float(np.max(np.abs(samples))) if samples.shape[1] > 0 else 0.0
    return _estimates(samples, sample_rate, peak)


def _estimates(
    samples: np.ndarray, sample_rate: int, peak: float
) -> tuple[tempo.TempoEstimate, key.KeyEstimate]:
    if samples.shape[1] < MIN_ANALYSIS_DURATION * sample_rate or peak <= 0:
        return tempo.NO_TEMPO, key.NO_KEY
    signal = to_analysis_mono(samples, sample_rate)
    beat = tempo.estimate_tempo(signal, ANALYSIS_SAMPLE_RATE)
    found = key.estimate_key(signal, ANALYSIS_SAMPLE_RATE)
    if found.name is None and beat.pulse < tempo.MIN_PULSE:
        # Neither a pulse nor a key: noise, or something as formless. A weak pulse alone does
        # not withhold the tempo: sung and organ chorales have little of one, and a key.
        return tempo.NO_TEMPO, found
    return beat, found


def _correlation(left: np.ndarray, right: np.ndarray) -> float | None:
    """Pearson correlation of two channels; ``None`` when either is constant or empty."""
    if left.shape[0] == 0:
        return None
    left = left - left.mean()
    right = right - right.mean()
    denominator = math.sqrt(float(np.dot(left, left)) * float(np.dot(right, right)))
    if denominator == 0.0:
        return None
    return float(np.clip(np.dot(left, right) / denominator, -1.0, 1.0))


def warm_up() -> None:
    """Load (or compile) librosa's code for the tempo and key analysis, once per process.

    Call once per process before anything is timed: the first use compiles for tens of seconds
    on a small CPU (a second or two when numba's on-disk cache is warm), later calls return at
    once. The analysis does this itself on first use; calling it early only moves the wait.
    Other processes of this environment doing the same wait their turn (numba's cache is not
    safe for concurrent writers, see :mod:`dgx_music.audio.numba_cache`).
    """
    mono.warm_up()
    tempo.warm_up()
    key.warm_up()
