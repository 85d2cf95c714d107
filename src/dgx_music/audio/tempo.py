"""Tempo of a mono signal: onset envelopes of four bands, autocorrelated, beat periods scored.

Onset strength envelopes (librosa, spectral flux on a mel spectrogram) of four frequency bands
are autocorrelated separately and summed; each peak is a candidate beat period, scored by the
autocorrelation at its metrical multiples and weighted by a log-normal tempo prior, as librosa's
own estimator does; the winner is refined to a fraction of a frame. How far the winning peak
stands out of the autocorrelation gives a calibrated confidence. See :func:`estimate_tempo`.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import NamedTuple

import librosa
import numpy as np

from dgx_music.audio import numba_cache
from dgx_music.audio.calibration import Calibration
from dgx_music.audio.mono import ANALYSIS_SAMPLE_RATE, too_short_or_silent, warm_up_clip

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
#: Below this normalised autocorrelation of the whole spectrum's onset envelope at the beat
#: period, audio has no clear pulse (8-30 s of white, pink or brown noise stays under 0.15, a
#: steady beat reaches 0.5 and more). Sung and organ chorales, whose notes swell instead of
#: striking, read 0-0.15 too, so a weak pulse alone does not withhold the tempo:
#: :func:`dgx_music.audio.metadata.analyze` withholds it only when the audio has no key either.
MIN_PULSE = 0.2
#: The most confidence a tempo read from a weak pulse (below :data:`MIN_PULSE`) may claim. The
#: real music the calibration was fitted on holds nothing without a beat, and noise envelopes
#: reach the same beat salience (0.6-3.0) as real beats (1.1 and up): below the pulse threshold
#: the salience cannot tell a soft beat from none, so such a tempo is a guess, flagged uncertain
#: (a drone with a faint hiss otherwise read 176 BPM at 0.91).
WEAK_PULSE_CONFIDENCE = 0.5
#: Chance that the tempo is right (2 %, half or double) by the salience of its autocorrelation
#: peak. Fitted on the tuning half of the real-music corpus (``python -m
#: benchmarks.analysis_accuracy calibrate``; docs/ANALYSIS.md).
TEMPO_CALIBRATION = Calibration(intercept=-2.894, slope=3.029)
#: Multiples of a candidate beat period whose autocorrelation supports it: the beat and the
#: half bar of 4/4 (the bar of 2/4).
METRICAL_MULTIPLES = (1.0, 2.0)


def warm_up() -> None:
    """Load (or compile) the librosa code of the tempo analysis, once per process, while no
    other process of this environment does (:func:`dgx_music.audio.numba_cache.first_use`).
    Every call of :func:`estimate_tempo` does this first."""
    numba_cache.first_use(__name__, lambda: estimate_tempo(warm_up_clip(), ANALYSIS_SAMPLE_RATE))


class TempoEstimate(NamedTuple):
    """What :func:`estimate_tempo` found."""

    #: Beats per minute; ``None`` for silence, audio shorter than 0.5 s or with no onsets.
    bpm: float | None
    #: Chance that ``bpm`` is right, 0..1 (:data:`TEMPO_CALIBRATION` of ``salience``, at most
    #: :data:`WEAK_PULSE_CONFIDENCE` when ``pulse`` is below :data:`MIN_PULSE`).
    confidence: float
    #: Normalised autocorrelation of the whole spectrum's onset envelope at the beat, 0..1.
    pulse: float
    #: Height of the beat's autocorrelation peak above the mean over all beat periods tried,
    #: in standard deviations.
    salience: float


NO_TEMPO = TempoEstimate(None, 0.0, 0.0, 0.0)


def estimate_tempo(mono: np.ndarray, sample_rate: int) -> TempoEstimate:
    """Global tempo of a mono signal, BPM, with a calibrated confidence.

    Onset strength envelopes (librosa, spectral flux on a mel spectrogram) of four frequency
    bands are autocorrelated separately and summed, over lags of 0.2..2 s (300..30 BPM). Each
    local maximum is a candidate beat period, scored by the mean autocorrelation at the period
    and at twice it (:data:`METRICAL_MULTIPLES`) and weighted by a log-normal prior (centre
    120 BPM, one octave wide) that chooses the metrical level, as librosa's own tempo estimator
    does; the winner is refined to a fraction of a frame by parabolic interpolation of its peak
    and of the peaks at its multiples.

    The confidence is the chance, calibrated on real music, that the tempo is right; it grows
    with how far the beat's autocorrelation peak stands above the autocorrelation at the other
    periods. A weak pulse does not withhold the tempo here (see :data:`MIN_PULSE`).

    Returns
    -------
    TempoEstimate
        ``bpm`` is ``None`` (and every figure 0) when the signal is silent, shorter than 0.5 s,
        or has no onsets to autocorrelate.
    """
    warm_up()
    if too_short_or_silent(mono, sample_rate):
        return NO_TEMPO
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
        return NO_TEMPO
    # Unbiased estimates (long lags sum fewer products), normalised so lag 0 is 1.
    unbias = 1.0 - np.arange(n_frames) / n_frames
    # Each band's envelope is a mean over its mel bands; weighted by its share of them, the
    # bands add up to the whole-spectrum envelope (librosa's onset strength).
    band_shares = np.diff(band_edges) / TEMPO_MEL_BANDS
    whole = librosa.autocorrelate(band_shares @ envelopes, max_size=n_frames)
    if whole[0] <= 0:
        return NO_TEMPO
    whole = whole / unbias / whole[0]
    # The candidates are read from the bands' own autocorrelations, each band with an equal
    # voice: the whole spectrum's without the cross-band terms, and without letting the wide
    # hi-hat band outweigh the narrow bass band.
    bands = librosa.autocorrelate(envelopes, max_size=n_frames, axis=-1)
    energy = float(bands[:, 0].sum())
    if energy <= 0:
        return NO_TEMPO
    autocorrelation = bands.sum(axis=0) / unbias / energy

    lags = np.arange(min_lag, max_lag + 1)
    values = autocorrelation[lags]
    is_peak = (values > autocorrelation[lags - 1]) & (values >= autocorrelation[lags + 1])
    is_peak &= values > 0
    if not is_peak.any():
        return NO_TEMPO
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
    lag = candidates[choice]
    # The pulse is read where a listener would: on the whole spectrum's envelope.
    pulse = float(np.clip(whole[lag - 1 : lag + 2].max(), 0.0, 1.0))
    # The salience: how far the beat stands out of the autocorrelation at every period tried.
    # A clear beat towers over the rest; a guess among near-equal peaks does not.
    spread = float(values.std())
    height = float(autocorrelation[lag - 1 : lag + 2].max()) - float(values.mean())
    salience = height / spread if spread > 0 else 0.0
    confidence = TEMPO_CALIBRATION(salience)
    if pulse < MIN_PULSE:
        confidence = min(confidence, WEAK_PULSE_CONFIDENCE)
    # Only the winner is refined to a fraction of a frame (the support reads +-1 frame anyway).
    return TempoEstimate(
        bpm=60.0 * frame_rate / _refine_period(autocorrelation, int(lag)),
        confidence=confidence,
        pulse=pulse,
        salience=salience,
    )


@lru_cache(maxsize=4)
def _mel_basis(sample_rate: int) -> np.ndarray:
    """librosa's mel filter bank for the tempo envelope (as ``melspectrogram`` builds it)."""
    basis: np.ndarray = librosa.filters.mel(
        sr=sample_rate, n_fft=TEMPO_N_FFT, n_mels=TEMPO_MEL_BANDS, dtype=np.float32
    )
    return basis


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
