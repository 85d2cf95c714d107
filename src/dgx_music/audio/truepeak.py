"""True peak per ITU-R BS.1770-4 Annex 2, computed only where it can matter.

The reference is the 4x polyphase oversampling of ``scipy.signal.resample_poly`` (Kaiser-windowed
sinc) and the largest oversampled magnitude. Oversampling a whole 16 s stereo clip is the single
most expensive step of an export, yet the peak lies in a few places. Every oversampled value is a
weighted sum of at most :func:`filter_reach` samples on each side, which bounds it two ways (see
:func:`sample_bounds`); blocks whose bound is below a true peak already found cannot hold the
maximum and are skipped. The blocks that are oversampled are cut out with enough context that
their values are exactly those of the whole-signal oversampling. Steady material (a sine, dense
noise) has its peak level in every block and is still oversampled whole.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import signal

#: Oversampling factor (BS.1770-4 Annex 2).
OVERSAMPLING = 4
#: Samples per block when deciding where to oversample.
BLOCK_FRAMES = 256
#: Relative slack on every bound, covering float rounding in the oversampling sums.
BOUND_SLACK = 1e-9
#: Blocks oversampled first, those with the highest bounds: their largest true peak is the floor
#: that rules the other blocks out, so it should be close to the real peak.
FIRST_BLOCKS = 8


@lru_cache(maxsize=1)
def _oversampling_filter() -> np.ndarray:
    # resample_poly's own default design for 4x (Kaiser window, beta 5, half length 10 taps per
    # phase, cutoff at the input's Nyquist), made once here instead of on every call.
    taps = signal.firwin(2 * 10 * OVERSAMPLING + 1, 1.0 / OVERSAMPLING, window=("kaiser", 5.0))
    taps.setflags(write=False)
    return taps


def oversample(audio: np.ndarray) -> np.ndarray:
    """4x oversampled (channels, 4 * samples) copy of (channels, samples) audio."""
    return signal.resample_poly(audio, OVERSAMPLING, 1, axis=-1, window=_oversampling_filter())


@lru_cache(maxsize=1)
def _impulse_response() -> np.ndarray:
    # The oversampler's response to one unit sample, read off the oversampler itself so the
    # bounds below can never drift from the filter resample_poly actually uses.
    centre = 64
    impulse = np.zeros(2 * centre + 1)
    impulse[centre] = 1.0
    response = oversample(impulse[np.newaxis, :])[0]
    response.setflags(write=False)
    return response


def filter_gain() -> float:
    """Largest sum of absolute tap weights over the output phases (an L1 norm, >= 1).

    No oversampled value can exceed this times the largest input magnitude it is made from.
    """
    response = _impulse_response()
    phases = [np.abs(response[phase::OVERSAMPLING]).sum() for phase in range(OVERSAMPLING)]
    return float(max(phases)) * (1.0 + BOUND_SLACK)


@lru_cache(maxsize=1)
def filter_moments() -> tuple[float, float]:
    """(largest |sum of taps|, largest step moment) over the output phases.

    Write an oversampled value next to sample ``n`` as ``sum * x[n]`` plus the taps times each
    reached sample's difference from ``x[n]``, and each difference as a sum of the steps
    ``x[i] - x[i-1]`` between them. Every step then has a coefficient (a partial sum of taps);
    the step moment is the sum of their magnitudes, so the value is at most
    ``sum * |x[n]| + moment * (largest step nearby)``, and some signal reaches it.
    """
    response = _impulse_response()
    centre = (response.size // OVERSAMPLING) // 2
    sums, moments = [], []
    for phase in range(OVERSAMPLING):
        taps = response[phase::OVERSAMPLING]
        # The weight of sample n + d in the value at sample n is taps[centre - d]: by offset d.
        weights = taps[::-1]
        offset = np.arange(weights.size) - (weights.size - 1 - centre)
        after = offset >= 1
        # Step into n + i (i >= 1) moves every sample from n + i on; step into n + i (i <= 0)
        # moves every sample before n + i the other way.
        right = np.cumsum(weights[after][::-1])
        left = np.cumsum(weights[~after & (offset < 0)])
        sums.append(abs(taps.sum()))
        moments.append(np.abs(right).sum() + np.abs(left).sum())
    return float(max(sums)) * (1.0 + BOUND_SLACK), float(max(moments)) * (1.0 + BOUND_SLACK)


def filter_reach() -> int:
    """Input samples on either side that an oversampled value depends on, plus one spare."""
    response = _impulse_response()
    centre = (response.size // OVERSAMPLING) // 2
    support = np.flatnonzero(response)
    distance = np.abs(support / OVERSAMPLING - centre).max()
    return int(np.ceil(distance)) + 1


def envelope(audio: np.ndarray) -> np.ndarray:
    """Per-sample true-peak magnitude across channels, linear (length = samples).

    Sample ``n`` gets the largest oversampled magnitude among the four points that start at it,
    over all channels.
    """
    return _fold_phases(oversample(audio), audio.shape[-1])


def _fold_phases(oversampled: np.ndarray, frames: int) -> np.ndarray:
    # Maximum and minimum over the strided phase/channel views: numpy's reductions over a short
    # trailing axis (reshape(frames, 4).max(axis=1)) are several times slower than this.
    views = oversampled[:, : frames * OVERSAMPLING].reshape(oversampled.shape[0], frames, -1)
    highest = views[0, :, 0].copy()
    lowest = highest.copy()
    for channel in range(views.shape[0]):
        for phase in range(views.shape[2]):
            np.maximum(highest, views[channel, :, phase], out=highest)
            np.minimum(lowest, views[channel, :, phase], out=lowest)
    np.negative(lowest, out=lowest)
    return np.maximum(highest, lowest, out=highest)


def _block_max(values: np.ndarray, block: int) -> np.ndarray:
    # Whole blocks as a reshaped view (no copy), then the shorter last block if there is one.
    whole = values.size // block
    maxima = np.empty(-(-values.size // block))
    if whole:
        np.max(values[: whole * block].reshape(whole, block), axis=1, out=maxima[:whole])
    if whole < maxima.size:
        maxima[-1] = values[whole * block :].max()
    return maxima


def _with_neighbours(per_block: np.ndarray) -> np.ndarray:
    nearby = per_block.copy()
    np.maximum(nearby[1:], per_block[:-1], out=nearby[1:])
    np.maximum(nearby[:-1], per_block[1:], out=nearby[:-1])
    return nearby


def sample_bounds(audio: np.ndarray) -> np.ndarray:
    """Upper bound of the true peak in each :data:`BLOCK_FRAMES` block, from its samples alone.

    A block's oversampled values draw on its own samples and on at most :func:`filter_reach`
    samples of each neighbour (the reach is far below a block), hence three-block maxima of
    the sample magnitude ``M`` and of the step between neighbouring samples ``D`` (zeros lie
    beyond both ends, as the oversampler assumes). The bound is the smaller of
    ``filter_gain() * M`` (any signal) and ``sum * M + moment * D`` (:func:`filter_moments`),
    which is far tighter where the signal moves slowly against the sample rate.
    """
    magnitude = np.abs(audio).max(axis=0)
    # Steps include the ones from silence into the first sample and out of the last.
    frames = audio.shape[-1]
    steps = np.empty(frames + 1)
    steps[0], steps[-1] = magnitude[0], magnitude[-1]
    if frames > 1:
        between = np.subtract(audio[:, 1:], audio[:, :-1])
        np.max(np.abs(between, out=between), axis=0, out=steps[1:-1])
    largest = _with_neighbours(_block_max(magnitude, BLOCK_FRAMES))
    # Step i leads into sample i; a block's own steps are those into its samples and the one
    # after its last, all within the neighbours' range.
    own_steps = _block_max(steps[:-1], BLOCK_FRAMES)
    own_steps[-1] = max(own_steps[-1], steps[-1])
    steepest = _with_neighbours(own_steps)
    tap_sum, moment = filter_moments()
    return np.minimum(filter_gain() * largest, tap_sum * largest + moment * steepest)


def block_true_peaks(audio: np.ndarray, selected: np.ndarray) -> np.ndarray:
    """Exact true peak of each selected :data:`BLOCK_FRAMES` block (``nan`` for the others).

    Runs of selected blocks are cut out with :func:`filter_reach` samples of context each side
    (zeros beyond the ends, as the whole-signal oversampling assumes) and oversampled in one
    call, so the values equal those of oversampling the whole signal.
    """
    frames = audio.shape[-1]
    reach = filter_reach()
    peaks = np.full(selected.size, np.nan)
    flags = np.concatenate([[False], selected, [False]]).astype(np.int8)
    change = np.flatnonzero(np.diff(flags))
    runs = list(zip(change[0::2], change[1::2], strict=True))
    if not runs:
        return peaks
    # Each run is laid out as [reach of context | its samples | reach of context], the context
    # being neighbouring samples or, past either end of the signal, zeros.
    spans = [(first * BLOCK_FRAMES, min(stop * BLOCK_FRAMES, frames)) for first, stop in runs]
    joined = np.zeros((audio.shape[0], sum(stop - start + 2 * reach for start, stop in spans)))
    offset = 0
    for start, stop in spans:
        source_start, source_stop = max(start - reach, 0), min(stop + reach, frames)
        destination = offset + source_start - (start - reach)
        joined[:, destination : destination + source_stop - source_start] = audio[
            :, source_start:source_stop
        ]
        offset += stop - start + 2 * reach
    oversampled = oversample(joined)
    magnitude = np.abs(oversampled, out=oversampled).max(axis=0)
    offset = 0
    for (first, stop), (start_frame, stop_frame) in zip(runs, spans, strict=True):
        inner_start = (offset + reach) * OVERSAMPLING
        inner = magnitude[inner_start : inner_start + (stop_frame - start_frame) * OVERSAMPLING]
        peaks[first:stop] = _block_max(inner, BLOCK_FRAMES * OVERSAMPLING)
        offset += stop_frame - start_frame + 2 * reach
    return peaks


def peak_bounds(audio: np.ndarray, bounds: np.ndarray | None = None) -> tuple[float, np.ndarray]:
    """True peak of (channels, samples) audio, linear, and tightened per-block upper bounds.

    Parameters
    ----------
    audio
        Float array (channels, samples), full scale 1.0.
    bounds
        Per-block upper bounds of the true peak (:data:`BLOCK_FRAMES` blocks), when the caller
        knows tighter ones than :func:`sample_bounds`; they must really be upper bounds.

    Returns
    -------
    tuple
        The largest 4x-oversampled magnitude, and the bounds with every block that was
        oversampled replaced by its exact true peak (for a later search on scaled audio).
    """
    audio = np.atleast_2d(audio)
    bounds = sample_bounds(audio) if bounds is None else bounds.copy()
    # Oversample the most promising blocks first: their largest peak is a floor that rules out
    # every block whose bound lies below it. Then oversample what is left.
    first = np.zeros(bounds.size, dtype=bool)
    first[np.argsort(bounds)[-FIRST_BLOCKS:]] = True
    exact = block_true_peaks(audio, first)
    bounds[first] = exact[first]
    found = float(exact[first].max())
    remaining = (bounds >= found) & ~first
    if remaining.any():
        exact = block_true_peaks(audio, remaining)
        bounds[remaining] = exact[remaining]
        found = max(found, float(exact[remaining].max()))
    return found, bounds


def true_peak(audio: np.ndarray, bounds: np.ndarray | None = None) -> float:
    """Largest 4x-oversampled magnitude of (channels, samples) audio, linear.

    ``bounds`` as for :func:`peak_bounds`.
    """
    return peak_bounds(audio, bounds)[0]
