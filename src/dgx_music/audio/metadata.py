"""Metadata of an audio array: loudness, peaks, level statistics, stereo image, tempo and key.

Loudness follows ITU-R BS.1770-4 (K-weighting, 400 ms gated blocks, via :class:`pyloudnorm.Meter`)
and EBU Tech 3342 (loudness range from 3 s short-term loudness). True peak follows BS.1770-4
Annex 2 (4x oversampling). Tempo comes from the autocorrelations of librosa's onset strength
envelopes in four frequency bands; key from the Krumhansl-Schmuckler algorithm on librosa's
constant-Q chroma together with the harmonic functions of the triads heard in it.

Arrays are float, shaped (channels, samples); a 1-D array is mono. Level values are relative to
digital full scale (1.0): a full-scale sine has a sample peak of 0 dBFS and an RMS of -3.01 dBFS.

Key names use one fixed scheme, shared with :mod:`dgx_music.generation.synth`: the tonic from
:data:`PITCH_CLASS_NAMES` (sharps only: ``"C#"``, never ``"Db"``), a space, then ``"major"`` or
``"minor"``, e.g. ``"F# minor"``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import librosa
import numpy as np
import pyloudnorm
from scipy.signal import lfilter

from dgx_music.audio import export, numba_cache, truepeak
from dgx_music.audio.notes import KEY_NAMES
from dgx_music.errors import InvalidAudioError

logger = logging.getLogger(__name__)

#: Krumhansl-Kessler key profiles (Krumhansl 1990), tonic first.
KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])

#: Triads recognised in chord windows: the 12 major (root C first), then the 12 minor.
_TRIAD_STEPS = {"major": (0, 4, 7), "minor": (0, 3, 7)}
#: How strongly a chord speaks for a key, by (semitones of its root above the tonic, quality):
#: the tonic most, then the dominant (the major V in minor keys too: the raised leading tone
#: of harmonic minor), the subdominant, then the other diatonic chords. A chord outside the
#: key counts against it. Weights are in units of the tonic chord's (3).
_MAJOR_KEY_CHORDS = {(0, "major"): 3.0, (7, "major"): 2.0, (5, "major"): 1.5, (9, "minor"): 1.0,
                     (2, "minor"): 1.0, (4, "minor"): 0.5}  # fmt: skip
_MINOR_KEY_CHORDS = {(0, "minor"): 3.0, (7, "major"): 2.0, (5, "minor"): 1.5, (8, "major"): 1.0,
                     (3, "major"): 1.0, (10, "major"): 1.0, (7, "minor"): 0.5}  # fmt: skip
_FOREIGN_CHORD_WEIGHT = -1.0
_TONIC_CHORD_WEIGHT = 3.0


def _triad_templates() -> np.ndarray:
    """The 24 triads as centred, unit-norm 12-bin chroma vectors (majors from C, then minors)."""
    templates = np.zeros((24, 12))
    for quality_index, steps in enumerate(_TRIAD_STEPS.values()):
        for root in range(12):
            templates[12 * quality_index + root, [(root + step) % 12 for step in steps]] = 1.0
    templates -= templates.mean(axis=1, keepdims=True)
    templates /= np.linalg.norm(templates, axis=1, keepdims=True)
    return templates


def _chord_function_weights() -> np.ndarray:
    """Matrix (24 keys x 24 triads): how much each recognised triad speaks for each key."""
    weights = np.full((24, 24), _FOREIGN_CHORD_WEIGHT)
    qualities = list(_TRIAD_STEPS)
    for key_index in range(24):
        tonic, table = key_index % 12, (_MAJOR_KEY_CHORDS if key_index < 12 else _MINOR_KEY_CHORDS)
        for (interval, quality), weight in table.items():
            weights[key_index, 12 * qualities.index(quality) + (tonic + interval) % 12] = weight
    return weights / _TONIC_CHORD_WEIGHT


_TRIADS = _triad_templates()
_CHORD_FUNCTIONS = _chord_function_weights()

#: Largest channel count accepted (BS.1770-4 weights up to five channels).
MAX_CHANNELS = 5
#: Lowest sample rate accepted, Hz (the K-weighting shelf sits at 1.5 kHz).
MIN_SAMPLE_RATE = 8_000
#: Sample rate tempo and key are analysed at, Hz.
ANALYSIS_SAMPLE_RATE = 22_050
#: Audio shorter than this has no tempo or key, seconds.
MIN_ANALYSIS_DURATION = 0.5
#: Onset-envelope hop at the analysis rate, samples (11.6 ms).
TEMPO_HOP = 256
#: Mel bands of the onset envelopes and the edges that split them into separate envelopes, Hz
#: (kick and bass; low chords; melody and snare body; hi-hats and noise).
TEMPO_MEL_BANDS = 128
#: FFT size of the tempo spectrogram at the analysis rate, samples (93 ms).
TEMPO_N_FFT = 2048
TEMPO_BAND_EDGES_HZ = (200.0, 800.0, 3000.0)
#: Tempo search range, BPM.
TEMPO_RANGE = (30.0, 300.0)
#: Centre and spread of the log-normal tempo prior that picks among tempo octaves, BPM / octaves.
TEMPO_PRIOR_BPM = 120.0
TEMPO_PRIOR_OCTAVES = 1.0
#: Below this normalised autocorrelation at the beat period, audio has no tempo (8 s of white or
#: pink noise stays under 0.12, a steady beat reaches 0.5 and more).
MIN_TEMPO_CONFIDENCE = 0.2
#: Multiples of a candidate beat period whose autocorrelation supports it: the beat and the
#: half bar of 4/4 (the bar of 2/4).
METRICAL_MULTIPLES = (1.0, 2.0)
#: Below this spread of the mean chroma (standard deviation over mean), audio has no key
#: (white noise reaches 0.01, pink 0.03, brown 0.07; music with drums and inharmonic
#: instruments can sit as low as 0.06, so this gate only catches the flattest noise).
MIN_CHROMA_CONTRAST = 0.04
#: Below this mean fit (Pearson) of the short chroma windows to their best triad, audio has no
#: key (white, pink and brown noise stay under 0.54; music over a wide test corpus reaches 0.6
#: and more).
MIN_CHORD_FIT = 0.57
#: Chroma analysis: lowest pitch (C2, 65.4 Hz; kick drums and rumble below carry no key), octaves.
CHROMA_FMIN = 65.406
CHROMA_OCTAVES = 6
CHROMA_BINS_PER_OCTAVE = 36
#: Shortest input the CQT's lowest octave is computed on without padding, seconds.
CQT_MIN_SECONDS = 2.0
CHROMA_HOP = 512
#: Gain inside the log compression of the constant-Q magnitudes, log(1 + gain * |C| / max |C|).
CHROMA_LOG_GAIN = 100.0
#: Chroma frames per chord window (8 x 512 samples at 22.05 kHz: 0.19 s, shorter than any
#: chord at 180 BPM) and the triad fit a window needs to vote for its chord.
CHORD_WINDOW_FRAMES = 8
MIN_CHORD_VOTE_FIT = 0.5
#: Weight of the chord-function score against the profile correlation (1: a clip made only of
#: tonic chords adds as much as a perfect profile correlation).
CHORD_FUNCTION_WEIGHT = 1.0
#: EBU Tech 3342 short-term window and its hop, seconds.
SHORT_TERM_SECONDS = 3.0
SHORT_TERM_HOP_SECONDS = 0.1
#: EBU Tech 3342 gates (LUFS, LU) and the percentiles whose difference is the loudness range.
LRA_ABSOLUTE_GATE = -70.0
LRA_RELATIVE_GATE = -20.0
LRA_PERCENTILES = (10.0, 95.0)
#: BS.1770-4 channel weights: L, R, C, Ls, Rs.
_CHANNEL_WEIGHTS = np.array([1.0, 1.0, 1.0, 1.41, 1.41])


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
        Estimated tempo, BPM; ``None`` for silence, audio shorter than 0.5 s, and arrhythmic
        audio (confidence below :data:`MIN_TEMPO_CONFIDENCE`).
    tempo_confidence
        Normalised autocorrelation of the onset envelope at the tempo's beat period, 0..1.
    key
        Estimated key, e.g. ``"A minor"`` (see :data:`KEY_NAMES`); ``None`` for silence, audio
        shorter than 0.5 s, and atonal audio such as noise (nearly flat chroma).
    key_confidence
        Pearson correlation of the mean chroma with the winning key profile, 0..1 (0 when
        ``key`` is ``None``).
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


def integrated_loudness(audio: np.ndarray, sample_rate: int) -> float | None:
    """Integrated loudness per ITU-R BS.1770-4, LUFS, of float audio shaped (channels, samples).

    The exporter's measurement (one implementation for both), with ``None`` instead of ``-inf``
    when everything is gated out (silence, or all blocks below -70 LUFS), and ``None`` for audio
    shorter than one 400 ms block.
    """
    lufs = export.integrated_loudness(audio, sample_rate)
    return lufs if lufs is not None and math.isfinite(lufs) else None


def _k_weighted(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Apply the BS.1770-4 K-weighting (pre-filter shelf, then RLB high-pass) along samples."""
    # The same two biquads pyloudnorm.Meter uses, so both loudness measures agree.
    stages = (
        pyloudnorm.IIRfilter(4.0, 1.0 / math.sqrt(2.0), 1500.0, sample_rate, "high_shelf"),
        pyloudnorm.IIRfilter(0.0, 0.5, 38.0, sample_rate, "high_pass"),
    )
    for stage in stages:
        audio = stage.passband_gain * lfilter(stage.b, stage.a, audio, axis=-1)
    return audio


def loudness_range(audio: np.ndarray, sample_rate: int) -> float | None:
    """Loudness range per EBU Tech 3342, LU, of float audio shaped (channels, samples).

    Short-term loudness (BS.1770-4 K-weighted mean square over 3 s windows, every 0.1 s) is gated
    at -70 LUFS absolute, then at 20 LU below the power mean of what passed; the range is the
    difference of the 10th and 95th percentiles of what remains. ``None`` when the audio is
    shorter than 3 s or no window passes the gates.
    """
    window = round(SHORT_TERM_SECONDS * sample_rate)
    if audio.shape[-1] < window:
        return None
    weighted = _k_weighted(audio, sample_rate)
    weights = _CHANNEL_WEIGHTS[: audio.shape[0], np.newaxis]
    power = np.sum(weights * weighted**2, axis=0)
    cumulative = np.concatenate(([0.0], np.cumsum(power)))
    hop = round(SHORT_TERM_HOP_SECONDS * sample_rate)
    starts = np.arange(0, audio.shape[-1] - window + 1, hop)
    mean_square = (cumulative[starts + window] - cumulative[starts]) / window
    mean_square = mean_square[mean_square > 0]
    short_term = -0.691 + 10.0 * np.log10(mean_square)  # BS.1770-4 eq. 2
    short_term = short_term[short_term >= LRA_ABSOLUTE_GATE]
    if short_term.size == 0:
        return None
    gate = 10.0 * np.log10(np.mean(10.0 ** (short_term / 10.0))) + LRA_RELATIVE_GATE
    short_term = short_term[short_term >= gate]
    low, high = np.percentile(short_term, LRA_PERCENTILES)
    return float(high - low)


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


def _to_analysis_mono(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    mono = audio.mean(axis=0)
    if sample_rate != ANALYSIS_SAMPLE_RATE:
        mono = librosa.resample(
            mono, orig_sr=sample_rate, target_sr=ANALYSIS_SAMPLE_RATE, res_type="soxr_hq"
        )
    analysis: np.ndarray = mono.astype(np.float32)
    return analysis


def estimate_tempo(mono: np.ndarray, sample_rate: int) -> tuple[float | None, float]:
    """Global tempo of a mono signal, BPM, and a confidence 0..1.

    Onset strength envelopes (librosa, spectral flux on a mel spectrogram) of four frequency
    bands are autocorrelated separately and summed, over lags of 0.2..2 s (300..30 BPM). Each
    local maximum is a candidate beat period, scored by the mean autocorrelation at the period
    and at twice it (:data:`METRICAL_MULTIPLES`) and weighted by a log-normal prior (centre
    120 BPM, one octave wide) that chooses the metrical level, as librosa's own tempo estimator
    does; the winner is refined to a fraction of a frame by parabolic interpolation of its peak
    and of the peaks at its multiples.

    Returns
    -------
    tuple of (float or None, float)
        Tempo in BPM (``None`` when the signal is silent, shorter than 0.5 s, or its
        confidence is below :data:`MIN_TEMPO_CONFIDENCE`) and the normalised autocorrelation
        of the whole-spectrum onset envelope at the beat period, clipped to 0..1.
    """
    _ensure_compiled()
    if mono.shape[-1] < MIN_ANALYSIS_DURATION * sample_rate or not np.any(mono):
        return None, 0.0
    # One onset envelope per frequency band, autocorrelated separately and then averaged: in
    # one envelope of the whole spectrum a kick on the beat and a hi-hat on the off-beat
    # correlate with each other at 1.5 beats, which can outweigh the true beat (150 BPM read
    # as 100); within a band each instrument only correlates with itself.
    mel_edges = np.searchsorted(
        librosa.mel_frequencies(n_mels=TEMPO_MEL_BANDS, fmax=sample_rate / 2.0),
        TEMPO_BAND_EDGES_HZ,
    )
    band_edges = [0, *mel_edges.tolist(), TEMPO_MEL_BANDS]
    # librosa's onset strength on its own log-power mel spectrogram, with the mel projection
    # done as one matrix product (librosa's einsum takes a quarter of the whole analysis).
    power = np.abs(librosa.stft(mono, n_fft=TEMPO_N_FFT, hop_length=TEMPO_HOP)) ** 2
    mel_power = _mel_basis(sample_rate) @ power
    envelopes = librosa.onset.onset_strength_multi(
        S=librosa.power_to_db(mel_power),
        sr=sample_rate,
        n_fft=TEMPO_N_FFT,
        hop_length=TEMPO_HOP,
        channels=band_edges,
    )
    envelopes = envelopes - envelopes.mean(axis=1, keepdims=True)
    n_frames = envelopes.shape[1]
    frame_rate = sample_rate / TEMPO_HOP  # Hz
    min_lag = max(2, math.floor(60.0 * frame_rate / TEMPO_RANGE[1]))
    max_lag = min(math.ceil(60.0 * frame_rate / TEMPO_RANGE[0]), n_frames // 2)
    if max_lag <= min_lag + 1:
        return None, 0.0
    # Unbiased estimates (long lags sum fewer products), normalised so lag 0 is 1.
    unbias = 1.0 - np.arange(n_frames) / n_frames
    # Each band's envelope is a mean over its mel bands; weighted by its share of them, the
    # bands add up to the whole-spectrum envelope (librosa's onset strength).
    band_shares = np.diff(band_edges) / TEMPO_MEL_BANDS
    whole = librosa.autocorrelate(band_shares @ envelopes, max_size=n_frames)
    if whole[0] <= 0:
        return None, 0.0
    whole = whole / unbias / whole[0]
    # The candidates are read from the bands' own autocorrelations, each band with an equal
    # voice: the whole spectrum's without the cross-band terms, and without letting the wide
    # hi-hat band outweigh the narrow bass band.
    bands = librosa.autocorrelate(envelopes, max_size=n_frames, axis=-1)
    energy = float(bands[:, 0].sum())
    if energy <= 0:
        return None, 0.0
    autocorrelation = bands.sum(axis=0) / unbias / energy

    lags = np.arange(min_lag, max_lag + 1)
    values = autocorrelation[lags]
    is_peak = (values > autocorrelation[lags - 1]) & (values >= autocorrelation[lags + 1])
    is_peak &= values > 0
    if not is_peak.any():
        return None, 0.0
    # Each autocorrelation peak is a candidate beat period. The peak height alone cannot tell
    # a beat from a dotted beat when eighth notes fill the grid: at 1.5 beats the eighths line
    # up as well as at one beat, and off-beat hi-hats can make that peak the higher one (150
    # BPM read as 100). Beats pair into half bars, so a true beat period recurs at twice its
    # length, where the drum pattern repeats. Each candidate is scored by the mean
    # autocorrelation at 1 and 2 times its period. (Four times was tried too: a dotted
    # period's fourth multiple, 6 beats, lands on the grid of bar pairs and props it up.)
    candidates = lags[is_peak]
    support = np.array([_metrical_support(autocorrelation, float(lag)) for lag in candidates])
    bpm = 60.0 * frame_rate / candidates
    prior = np.exp(-0.5 * (np.log2(bpm / TEMPO_PRIOR_BPM) / TEMPO_PRIOR_OCTAVES) ** 2)
    choice = int(np.argmax(support * prior))
    # The confidence is read where a listener would: on the whole spectrum's envelope.
    lag = candidates[choice]
    confidence = float(np.clip(whole[lag - 1 : lag + 2].max(), 0.0, 1.0))
    if confidence < MIN_TEMPO_CONFIDENCE:
        return None, confidence
    # Only the winner is refined to a fraction of a frame (the support reads +-1 frame anyway).
    return 60.0 * frame_rate / _refine_period(autocorrelation, int(lag)), confidence


@lru_cache(maxsize=4)
def _mel_basis(sample_rate: int) -> np.ndarray:
    """librosa's mel filter bank for the tempo envelope (as ``melspectrogram`` builds it)."""
    basis: np.ndarray = librosa.filters.mel(
        sr=sample_rate, n_fft=TEMPO_N_FFT, n_mels=TEMPO_MEL_BANDS, dtype=np.float32
    )
    return basis


@lru_cache(maxsize=1)
def _cq_to_chroma() -> np.ndarray:
    """librosa's map from the constant-Q bins to 12 chroma bins (as ``chroma_cqt`` builds it)."""
    mapping: np.ndarray = librosa.filters.cq_to_chroma(
        CHROMA_OCTAVES * CHROMA_BINS_PER_OCTAVE,
        bins_per_octave=CHROMA_BINS_PER_OCTAVE,
        n_chroma=12,
        fmin=CHROMA_FMIN,
    )
    return mapping


def _metrical_support(autocorrelation: np.ndarray, period: float) -> float:
    """Mean autocorrelation at the :data:`METRICAL_MULTIPLES` of a period (those that fit).

    Each multiple reads the largest value within a frame of its position, so a period that is
    a fraction of a frame off does not miss its own peaks.
    """
    limit = (autocorrelation.shape[0] * 3) // 4  # longer lags average too few products
    values = []
    for multiple in METRICAL_MULTIPLES:
        lag = round(multiple * period)
        if lag + 1 >= limit:
            break
        values.append(float(autocorrelation[lag - 1 : lag + 2].max()))
    return float(np.mean(values))


def _parabolic_peak(values: np.ndarray, index: int) -> float:
    """Fractional position of the maximum of the parabola through values[index-1..index+1]."""
    left, centre, right = values[index - 1], values[index], values[index + 1]
    curvature = left - 2.0 * centre + right
    if curvature >= 0:
        return float(index)
    return index + 0.5 * float(np.clip((left - right) / curvature, -1.0, 1.0))


def _refine_period(autocorrelation: np.ndarray, lag: int) -> float:
    """Beat period in frames, from the peak at ``lag`` and the peaks at its multiples.

    Quantisation to whole frames would cost up to 3 % at 180 BPM; the k-th multiple of the
    period pins it down k times more finely, so the estimate is a least-squares fit of the
    interpolated peak positions against k.
    """
    limit = autocorrelation.shape[0] // 2
    period = _parabolic_peak(autocorrelation, lag)
    multiples, positions = [1.0], [period]
    for k in range(2, 9):
        guess = round(k * period)
        if guess + 3 >= limit:
            break
        index = guess - 2 + int(np.argmax(autocorrelation[guess - 2 : guess + 3]))
        if autocorrelation[index] <= 0:
            break
        multiples.append(float(k))
        positions.append(_parabolic_peak(autocorrelation, index))
        k_values, peak_positions = np.array(multiples), np.array(positions)
        period = float(np.dot(k_values, peak_positions) / np.dot(k_values, k_values))
    return period


def estimate_key(mono: np.ndarray, sample_rate: int) -> tuple[str | None, float]:
    """Key of a mono signal by the Krumhansl-Schmuckler algorithm, and a confidence 0..1.

    The constant-Q spectrum (librosa, C2..B7, tuning estimated from the signal) is
    log-compressed, folded into a chroma per frame, averaged over time and correlated (Pearson)
    with the 24 rotations of the Krumhansl-Kessler major and minor profiles. To each key's
    correlation is added how strongly the triads recognised in 0.19 s windows speak for it
    (tonic, dominant, subdominant, other diatonic chords; foreign chords count against it);
    the best sum names the key.

    Returns
    -------
    tuple of (str or None, float)
        Key name such as ``"A minor"`` (``None`` when the signal is silent, shorter than 0.5 s
        or has a nearly flat chroma or no triad-like windows, as noise has) and the winning
        key's profile correlation clipped to 0..1.
    """
    _ensure_compiled()
    if mono.shape[-1] < MIN_ANALYSIS_DURATION * sample_rate or not np.any(mono):
        return None, 0.0
    shortfall = math.ceil(CQT_MIN_SECONDS * sample_rate) - mono.shape[-1]
    if shortfall > 0:
        # Silence appended adds only all-zero chroma frames: it scales the mean chroma, which
        # the correlation ignores, and spares the CQT's longest filters an input too short.
        mono = np.pad(mono, (0, shortfall))
    tuning = _estimate_tuning(mono, sample_rate)
    spectrum = np.abs(
        librosa.cqt(
            mono,
            sr=sample_rate,
            hop_length=CHROMA_HOP,
            fmin=CHROMA_FMIN,
            n_bins=CHROMA_OCTAVES * CHROMA_BINS_PER_OCTAVE,
            bins_per_octave=CHROMA_BINS_PER_OCTAVE,
            tuning=tuning,
        )
    )
    # Log compression, relative to the loudest bin so the result does not depend on level,
    # lets every sounding note count, not only the loudest few (the tonic and fifth, which
    # would pull the estimate towards the dominant key).
    spectrum = np.log1p(CHROMA_LOG_GAIN * spectrum / spectrum.max())
    # librosa's chroma_cqt without its per-frame normalisation (loud frames should weigh more
    # than quiet ones, as a listener hears them), as one matrix product.
    chroma = _cq_to_chroma() @ spectrum
    profile = chroma.mean(axis=1)
    mean = float(profile.mean())
    if mean <= 0 or float(profile.std()) < MIN_CHROMA_CONTRAST * mean:
        return None, 0.0
    votes, fit = _chord_votes(chroma)
    if fit < MIN_CHORD_FIT:
        return None, 0.0
    profile_scores = key_correlations(profile)
    # The profile alone confuses keys that share their notes (C major and A minor) or most of
    # them (C major and G major); which chords sound, and for how long, tells them apart: the
    # chords of C major and A minor are the same, but C major makes C and G major its
    # strongest chords, A minor makes A minor and E major (harmonic minor) its strongest.
    scores = profile_scores + CHORD_FUNCTION_WEIGHT * (_CHORD_FUNCTIONS @ votes)
    best = int(np.argmax(scores))
    return KEY_NAMES[best], float(np.clip(profile_scores[best], 0.0, 1.0))


def _chord_votes(chroma: np.ndarray) -> tuple[np.ndarray, float]:
    """Share of short windows won by each of the 24 triads, and the mean fit of the winners.

    The chroma (12 x frames) is averaged over windows of :data:`CHORD_WINDOW_FRAMES` frames;
    each window is matched (Pearson) against the triad templates. Windows whose best fit reaches
    :data:`MIN_CHORD_VOTE_FIT` vote for that triad; silent windows are left out.
    """
    n_windows = max(1, chroma.shape[1] // CHORD_WINDOW_FRAMES)
    usable = min(chroma.shape[1], n_windows * CHORD_WINDOW_FRAMES)
    windows = chroma[:, :usable].reshape(12, -1, min(usable, CHORD_WINDOW_FRAMES)).mean(axis=2)
    energy = windows.sum(axis=0)
    windows = windows[:, energy > 0.01 * energy.max()]
    centred = windows - windows.mean(axis=0, keepdims=True)
    norms = np.linalg.norm(centred, axis=0)
    centred = centred[:, norms > 0] / norms[norms > 0]
    if centred.shape[1] == 0:
        return np.zeros(24), 0.0
    fits = _TRIADS @ centred
    winners, best_fits = fits.argmax(axis=0), fits.max(axis=0)
    voting = best_fits >= MIN_CHORD_VOTE_FIT
    votes = np.bincount(winners[voting], minlength=24) / centred.shape[1]
    return votes.astype(np.float64), float(best_fits.mean())


def _estimate_tuning(mono: np.ndarray, sample_rate: int) -> float:
    """Deviation from A440 tuning, fractions of a CQT bin, as ``librosa.estimate_tuning``.

    Unlike librosa's, it answers 0 (A440) without a warning when the signal has no pitched
    peak at all (a constant, or noise below the tracker's threshold).
    """
    pitches, magnitudes = librosa.piptrack(y=mono, sr=sample_rate)
    pitched = pitches > 0
    if not pitched.any():
        return 0.0
    strong = pitches[pitched & (magnitudes >= np.median(magnitudes[pitched]))]
    if strong.size == 0:
        return 0.0
    return float(librosa.pitch_tuning(strong, bins_per_octave=CHROMA_BINS_PER_OCTAVE))


def key_correlations(chroma_profile: np.ndarray) -> np.ndarray:
    """Pearson correlation of a 12-bin chroma profile (C first) with each of :data:`KEY_NAMES`."""
    templates = np.stack(
        [np.roll(KK_MAJOR, tonic) for tonic in range(12)]
        + [np.roll(KK_MINOR, tonic) for tonic in range(12)]
    )
    templates = templates - templates.mean(axis=1, keepdims=True)
    templates /= np.linalg.norm(templates, axis=1, keepdims=True)
    centred = chroma_profile - chroma_profile.mean()
    norm = np.linalg.norm(centred)
    if norm == 0:
        return np.zeros(len(KEY_NAMES))
    correlations: np.ndarray = templates @ (centred / norm)
    return correlations


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

    tempo, tempo_confidence, key, key_confidence = _tempo_and_key(samples, sample_rate, peak)

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
        tempo_bpm=tempo,
        tempo_confidence=tempo_confidence,
        key=key,
        key_confidence=key_confidence,
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
    samples = _as_channels(audio, sample_rate)
    peak = float(np.max(np.abs(samples))) if samples.shape[1] > 0 else 0.0
    return _tempo_and_key(samples, sample_rate, peak)


def _tempo_and_key(
    samples: np.ndarray, sample_rate: int, peak: float
) -> tuple[float | None, float, str | None, float]:
    if samples.shape[1] < MIN_ANALYSIS_DURATION * sample_rate or peak <= 0:
        return None, 0.0, None, 0.0
    _ensure_compiled()
    mono = _to_analysis_mono(samples, sample_rate)
    tempo, tempo_confidence = estimate_tempo(mono, ANALYSIS_SAMPLE_RATE)
    key, key_confidence = estimate_key(mono, ANALYSIS_SAMPLE_RATE)
    return tempo, tempo_confidence, key, key_confidence


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


#: Set once this process has used librosa's compiled code (see :func:`_ensure_compiled`).
_compiled = threading.Event()
_compile_lock = threading.RLock()
_compiling = False  # True while the holder of _compile_lock runs the warm-up clip


def _ensure_compiled(sample_rate: int = 32_000) -> None:
    """Analyse a synthetic clip once per process, under :func:`numba_cache.exclusive`.

    Every path into librosa calls this first, so a process's first use of librosa's numba code
    (which loads it from numba's on-disk cache, or compiles and writes it there) happens while
    no other process of this environment does the same: numba does not lock its cache itself,
    and concurrent writers corrupt it (see :mod:`dgx_music.audio.numba_cache`). Threads of one
    process wait on a thread lock; the warm-up's own calls back into the analysis pass through.
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
                clip = _warm_up_clip(sample_rate)
                _tempo_and_key(clip, sample_rate, float(np.max(np.abs(clip))))
            _compiled.set()
            logger.debug(
                "metadata analysis warmed up",
                extra={"action": "metadata_warm_up", "seconds": time.perf_counter() - started},
            )
        finally:
            _compiling = False


def _warm_up_clip(sample_rate: int) -> np.ndarray:
    """2 s of stereo A3 with clicks at 120 BPM: reaches every librosa call of the analysis."""
    t = np.arange(2 * sample_rate) / sample_rate
    clicks = (np.mod(t, 0.5) < 0.01).astype(np.float64)
    tone = 0.3 * np.sin(2 * np.pi * 220.0 * t)
    return np.stack([tone + 0.5 * clicks, tone - 0.5 * clicks])


def warm_up(sample_rate: int = 32_000) -> None:
    """Compile (or load from numba's cache) librosa's code for the analysis, once per process.

    Call once per process before anything is timed: the first use compiles for tens of seconds
    on a small CPU (a second or two when numba's on-disk cache is warm), later calls take
    milliseconds. The analysis does this itself on first use; calling it early only moves the
    wait. Other processes of this environment doing the same wait their turn (numba's cache is
    not safe for concurrent writers).

    Parameters
    ----------
    sample_rate
        Rate of the clip, Hz; use the rate later calls will see so the same resampler runs.
    """
    _ensure_compiled(sample_rate)
