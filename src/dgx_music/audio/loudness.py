"""Loudness, in one place: K-weighting, gating, integrated loudness and loudness range.

Integrated loudness follows ITU-R BS.1770-4 and loudness range EBU Tech 3342. Every measure here
K-weights with the same filter (:func:`k_weighted`) and weights channels and offsets the
mean square the same way (:func:`mean_square_to_lufs`).

pyloudnorm (:class:`pyloudnorm.Meter`) is the project's reference meter; this module computes
integrated loudness with the same K-weighting coefficients, the same 400 ms blocks at 75 % overlap
(including pyloudnorm's block boundaries) and the same absolute (-70 LUFS) and relative (-10 LU)
gates, but vectorised, and with the per-block mean squares (BS.1770-4 eq. 1) exposed. A gain
change ``g`` multiplies every block's mean square by ``g**2`` exactly, so the exporter can
re-gate stored energies for each candidate gain instead of filtering the audio again. The unit
tests hold the result to pyloudnorm's within 1e-6 LU on varied material.

One rule for what has no loudness, everywhere: :func:`integrated_loudness` and
:func:`loudness_range` answer ``None`` for a clip too short to measure and for one whose every
block is gated out (silence). Only :func:`gated_loudness`, the exporter's inner loop, answers
``-inf`` for the latter, so its callers can tell the two apart.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from pyloudnorm.iirfilter import IIRfilter
from scipy import signal

#: Gating block length, seconds (BS.1770-4 section 2.8).
BLOCK_S = 0.4
#: Overlap of consecutive gating blocks, fraction of a block.
BLOCK_OVERLAP = 0.75
#: Absolute gate, LUFS (eq. 5).
ABSOLUTE_GATE_LUFS = -70.0
#: Relative gate below the absolutely gated loudness, LU (eq. 6).
RELATIVE_GATE_LU = -10.0
#: Loudness offset of eq. 2, dB.
LOUDNESS_OFFSET_DB = -0.691
#: Channel weights G_i for L, R, C, Ls, Rs (BS.1770-4 table 3).
CHANNEL_WEIGHTS = (1.0, 1.0, 1.0, 1.41, 1.41)
#: EBU Tech 3342 short-term window and its hop, seconds.
SHORT_TERM_S = 3.0
SHORT_TERM_HOP_S = 0.1
#: EBU Tech 3342 relative gate below the power mean of the short-term loudness, LU (its
#: absolute gate is :data:`ABSOLUTE_GATE_LUFS`), and the percentiles whose difference is the
#: loudness range.
LRA_RELATIVE_GATE_LU = -20.0
LRA_PERCENTILES = (10.0, 95.0)
#: Offset added before K-weighting to keep the filter state out of subnormal floats, full scale.
SUBNORMAL_GUARD = 1e-20


def k_weighting_sos(sample_rate: int) -> np.ndarray:
    """K-weighting (pre-filter shelf, then RLB high-pass) as second-order sections.

    The coefficients are pyloudnorm's own (same shelf gain, Q and corner frequencies), so the
    weighting matches the reference meter at every sample rate, not only the 48 kHz table.
    """
    # A writable copy: scipy's sosfilt refuses read-only coefficients.
    return _k_weighting_sos(sample_rate).copy()


@lru_cache(maxsize=16)
def _k_weighting_sos(sample_rate: int) -> np.ndarray:
    shelf = IIRfilter(4.0, 1 / np.sqrt(2), 1500.0, sample_rate, "high_shelf")
    high_pass = IIRfilter(0.0, 0.5, 38.0, sample_rate, "high_pass")
    sections = np.array([np.concatenate([stage.b, stage.a]) for stage in (shelf, high_pass)])
    sections.setflags(write=False)
    return sections


def k_weighted(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """K-weighted copy of (channels, samples) audio, along the samples.

    Between sparse sounds the filter's decaying state sinks into subnormal floats, which the
    CPU handles some 50x slower (16 s of clicks: 170 ms instead of 4 ms). A constant offset
    keeps the state normal; the 38 Hz high-pass removes it, and what is left (under 1e-40 in
    energy) lies hundreds of dB below the absolute gate.
    """
    weighted: np.ndarray = signal.sosfilt(
        k_weighting_sos(sample_rate), audio + SUBNORMAL_GUARD, axis=-1
    )
    return weighted


def mean_square_to_lufs(weighted_mean_square: np.ndarray) -> np.ndarray:
    """Loudness of channel-weighted mean squares, LUFS (BS.1770-4 eq. 2); ``-inf`` for 0."""
    with np.errstate(divide="ignore"):
        lufs: np.ndarray = LOUDNESS_OFFSET_DB + 10.0 * np.log10(weighted_mean_square)
    return lufs


def channel_weights(channels: int) -> np.ndarray:
    """BS.1770-4 weights of the first ``channels`` channels (L, R, C, Ls, Rs)."""
    if channels > len(CHANNEL_WEIGHTS):
        raise ValueError(
            f"audio has {channels} channels; BS.1770-4 weights at most {len(CHANNEL_WEIGHTS)}"
        )
    return np.asarray(CHANNEL_WEIGHTS[:channels])


@lru_cache(maxsize=64)
def block_bounds(frames: int, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """First and one-past-last sample of each gating block, as pyloudnorm places them.

    The arithmetic is pyloudnorm's, float for float (including its rounding of the block count
    and truncation of each bound), so both meters integrate exactly the same samples; the last
    block may reach past the end and is then cut short but still divided by the full length,
    as pyloudnorm does.
    """
    step = 1.0 - BLOCK_OVERLAP
    duration = frames / sample_rate
    count = int(np.round((duration - BLOCK_S) / (BLOCK_S * step))) + 1
    index = np.arange(count)
    starts = (BLOCK_S * (index * step) * sample_rate).astype(np.int64)
    stops = np.minimum((BLOCK_S * (index * step + 1) * sample_rate).astype(np.int64), frames)
    starts.setflags(write=False)
    stops.setflags(write=False)
    return starts, stops


def block_energies(audio: np.ndarray, sample_rate: int) -> np.ndarray | None:
    """Mean square of each K-weighted gating block, shape (channels, blocks) (BS.1770-4 eq. 1).

    Parameters
    ----------
    audio
        Float array (channels, samples), full scale 1.0, at most five channels (L, R, C, Ls, Rs).
    sample_rate
        Rate of ``audio``, Hz.

    Returns
    -------
    numpy.ndarray or None
        ``None`` when the clip is shorter than one 400 ms block.
    """
    audio = np.atleast_2d(audio)
    channel_weights(audio.shape[0])  # refuses more channels than BS.1770-4 weights
    frames = audio.shape[-1]
    block_frames = BLOCK_S * sample_rate
    if frames < int(round(block_frames)):
        return None
    weighted = k_weighted(audio, sample_rate)
    starts, stops = block_bounds(frames, sample_rate)
    # Blocks overlap, so sum squares once over the pieces between consecutive bounds and add
    # up each block's pieces from a running total. Over pieces (not samples) the running total
    # stays short, so cancellation between large totals cannot swamp a quiet block.
    edges = np.unique(np.concatenate([starts, stops]))
    edges = edges[edges < frames]
    squared = np.square(weighted, out=weighted)
    piece_sums = np.add.reduceat(squared, edges, axis=-1)
    running = np.zeros((audio.shape[0], edges.size + 1))
    np.cumsum(piece_sums, axis=-1, out=running[:, 1:])
    first = np.searchsorted(edges, starts)
    last = np.searchsorted(edges, stops)  # a stop at the end maps past the last piece
    return (running[:, last] - running[:, first]) / block_frames


def gated_loudness(energies: np.ndarray, power_gain: float = 1.0) -> float:
    """Integrated loudness from block mean squares, LUFS (BS.1770-4 eqs. 2 and 4-7).

    Parameters
    ----------
    energies
        Block mean squares from :func:`block_energies`, (channels, blocks).
    power_gain
        Factor every mean square is multiplied by first: ``g**2`` for audio scaled by ``g``.

    Returns
    -------
    float
        ``-inf`` when no block passes the gates (silence).
    """
    weighted = (channel_weights(energies.shape[0]) @ energies) * power_gain
    block_lufs = mean_square_to_lufs(weighted)
    above_absolute = block_lufs >= ABSOLUTE_GATE_LUFS
    if not above_absolute.any():
        return -np.inf
    relative_gate = mean_square_to_lufs(weighted[above_absolute].mean()) + RELATIVE_GATE_LU
    # pyloudnorm's second gate is strict on both thresholds; the first is not.
    gated = (block_lufs > relative_gate) & (block_lufs > ABSOLUTE_GATE_LUFS)
    if not gated.any():
        return -np.inf
    return float(mean_square_to_lufs(weighted[gated].mean()))


def integrated_loudness(audio: np.ndarray, sample_rate: int) -> float | None:
    """Integrated loudness of (channels, samples) audio, LUFS (BS.1770-4).

    ``None`` when the clip is shorter than one 400 ms block or every block is gated out.
    """
    energies = block_energies(audio, sample_rate)
    if energies is None:
        return None
    lufs = gated_loudness(energies)
    return lufs if np.isfinite(lufs) else None


def loudness_range(audio: np.ndarray, sample_rate: int) -> float | None:
    """Loudness range of (channels, samples) audio, LU (EBU Tech 3342).

    Short-term loudness (3 s windows every 0.1 s, K-weighted as everywhere here) is gated at
    :data:`ABSOLUTE_GATE_LUFS`, then at :data:`LRA_RELATIVE_GATE_LU` below the power mean of
    what passed; the range is the spread between the :data:`LRA_PERCENTILES` of what remains.
    ``None`` when the clip is shorter than one window or no window passes the gates.
    """
    audio = np.atleast_2d(audio)
    window = round(SHORT_TERM_S * sample_rate)
    if audio.shape[-1] < window:
        return None
    weights = channel_weights(audio.shape[0])
    power = weights @ np.square(k_weighted(audio, sample_rate))
    cumulative = np.concatenate(([0.0], np.cumsum(power)))
    hop = round(SHORT_TERM_HOP_S * sample_rate)
    starts = np.arange(0, audio.shape[-1] - window + 1, hop)
    short_term = mean_square_to_lufs((cumulative[starts + window] - cumulative[starts]) / window)
    short_term = short_term[short_term >= ABSOLUTE_GATE_LUFS]
    if short_term.size == 0:
        return None
    power_mean = np.mean(10.0 ** ((short_term - LOUDNESS_OFFSET_DB) / 10.0))
    short_term = short_term[short_term >= mean_square_to_lufs(power_mean) + LRA_RELATIVE_GATE_LU]
    low, high = np.percentile(short_term, LRA_PERCENTILES)
    return float(high - low)
