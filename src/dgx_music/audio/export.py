"""Export: any audio array to a 32 kHz stereo PCM16 WAV at the target loudness, atomically.

Loudness is integrated loudness per ITU-R BS.1770-4 (K-weighting, 400 ms blocks, absolute gate at
-70 LUFS, relative gate at -10 LU), measured by :mod:`dgx_music.audio.loudness` (held by the tests
to pyloudnorm, the reference meter, within 1e-6 LU) from block energies the exporter can re-gate
for any gain without filtering again. Peaks are held below both a sample peak ceiling and a
true-peak ceiling (BS.1770-4 Annex 2: 4x oversampled peak) by a look-ahead peak limiter, never
by clipping. The gain and the limiter are iterated until loudness and both peak ceilings hold,
or until reaching the loudness would need more limiting than :data:`MAX_LIMITER_REDUCTION_DB`
(very sparse, spiky material): then the peak ceilings win and the achieved loudness is reported
with the ``loudness_below_target`` flag.

Speed: the input is K-weighted and oversampled at most once. A pass whose gain leaves every
true peak under the ceiling needs no limiter and no measurement (its loudness follows from the
stored block energies); only limited passes filter their output again. True peaks are found by
:mod:`dgx_music.audio.truepeak`, which oversamples only blocks that could hold the peak.
"""

from __future__ import annotations

import errno
import hashlib
import io
import logging
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile
from scipy import ndimage, signal

from dgx_music.audio import truepeak
from dgx_music.audio.loudness import block_energies, gated_loudness, integrated_loudness
from dgx_music.config import OUTPUT_CHANNELS, OUTPUT_SAMPLE_RATE, Settings, get_settings
from dgx_music.errors import ExportError, InvalidAudioError

logger = logging.getLogger(__name__)

#: Oversampling factor for true-peak measurement (BS.1770-4 Annex 2).
TRUE_PEAK_OVERSAMPLING = truepeak.OVERSAMPLING
#: Limiter look-ahead (and attack ramp), seconds.
LIMITER_LOOKAHEAD_S = 0.005
#: Limiter hold before the gain starts to recover, seconds.
LIMITER_HOLD_S = 0.01
#: Limiter release time constant, seconds.
LIMITER_RELEASE_S = 0.08
#: Most gain reduction the limiter may apply to reach the loudness target, dB. Beyond this the
#: result would be audibly squashed, so the loudness target is given up instead.
MAX_LIMITER_REDUCTION_DB = 24.0
#: Loudness is accepted within this distance of the target, LU (the spec allows 0.2 on the file).
LOUDNESS_TOLERANCE_LU = 0.05
#: Headroom kept below the peak ceilings so PCM16 rounding cannot push a peak over them, dB.
CEILING_MARGIN_DB = 0.1
#: Gain/limit passes before giving up on the loudness target.
MAX_PASSES = 8
#: Largest PCM16 sample magnitude.
PCM16_FULL_SCALE = 32767

#: Flags recorded with an export.
FLAG_SILENT = "silent"
FLAG_TOO_SHORT = "too_short_for_loudness"
FLAG_LOUDNESS_BELOW_TARGET = "loudness_below_target"


def db_to_gain(decibels: float) -> float:
    return float(10.0 ** (decibels / 20.0))


def gain_to_db(gain: float) -> float:
    return 20.0 * math.log10(gain) if gain > 0 else -math.inf


def as_channels_first(audio: np.ndarray) -> np.ndarray:
    """Check ``audio`` and return it as float64 with shape (channels, samples).

    Raises
    ------
    InvalidAudioError
        For an empty array, more than two dimensions, or NaN/infinite values.
    """
    array = np.asarray(audio)
    if array.ndim == 1:
        array = array[np.newaxis, :]
    if array.ndim != 2 or array.shape[0] == 0:
        raise InvalidAudioError(
            f"audio must have shape (samples,) or (channels, samples), got {array.shape}"
        )
    if array.shape[1] == 0:
        raise InvalidAudioError("audio has no samples")
    if not np.issubdtype(array.dtype, np.number):
        raise InvalidAudioError(f"audio must be numeric, got dtype {array.dtype}")
    array = array.astype(np.float64, copy=False)
    if not np.all(np.isfinite(array)):
        raise InvalidAudioError("audio contains NaN or infinite values; refusing to export it")
    return array


def to_output_layout(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Resample to 32 kHz and map channels to stereo.

    Mono is duplicated to both channels. More than two channels are folded: even-numbered
    channels into the left, odd-numbered into the right, each side averaged. Resampling is
    polyphase with a Kaiser-windowed anti-aliasing filter (``scipy.signal.resample_poly``).

    Parameters
    ----------
    audio
        Float array, (samples,) or (channels, samples), full scale 1.0.
    sample_rate
        Rate of ``audio``, Hz.
    """
    if not isinstance(sample_rate, int | np.integer) or sample_rate <= 0:
        raise InvalidAudioError(f"sample_rate must be a positive integer in Hz, got {sample_rate}")
    array = as_channels_first(audio)
    if array.shape[0] == 1:
        array = np.repeat(array, OUTPUT_CHANNELS, axis=0)
    elif array.shape[0] > OUTPUT_CHANNELS:
        array = np.stack([array[0::2].mean(axis=0), array[1::2].mean(axis=0)])
    if sample_rate != OUTPUT_SAMPLE_RATE:
        divisor = math.gcd(int(sample_rate), OUTPUT_SAMPLE_RATE)
        array = signal.resample_poly(
            array, OUTPUT_SAMPLE_RATE // divisor, int(sample_rate) // divisor, axis=1
        )
    return np.ascontiguousarray(array)


def true_peak_envelope(audio: np.ndarray) -> np.ndarray:
    """Per-sample true-peak magnitude across channels, linear (BS.1770-4 Annex 2).

    The signal is oversampled 4x; each original sample gets the largest oversampled magnitude
    among the four points that follow it, and the largest of those across channels.
    """
    return truepeak.envelope(np.atleast_2d(audio))


def true_peak_dbtp(audio: np.ndarray) -> float:
    """True peak of (channels, samples) audio, dBTP (BS.1770-4 Annex 2).

    Exactly the maximum of :func:`true_peak_envelope`, but oversampling only the blocks that
    could hold it.
    """
    return gain_to_db(truepeak.true_peak(np.asarray(audio, dtype=np.float64)))


@dataclass(frozen=True)
class LimiterResult:
    audio: np.ndarray
    #: Deepest gain reduction applied, dB (0 when nothing was limited).
    reduction_db: float


class PeakLimiter:
    """Stereo-linked look-ahead peak limiter holding peaks under a linear ceiling.

    The gain each sample needs is ``ceiling / true-peak``; a minimum filter spreads it over the
    look-ahead before a peak and the hold after it, a moving average of the look-ahead length
    turns it into a smooth ramp (which can never rise above what the peak needs, because the
    minimum filter covers the whole averaging window), and a one-pole release lets it recover.

    Parameters
    ----------
    ceiling
        Largest allowed sample and true-peak magnitude, linear full scale.
    sample_rate
        Rate of the audio it will process, Hz.
    """

    def __init__(self, ceiling: float, sample_rate: int = OUTPUT_SAMPLE_RATE) -> None:
        self.ceiling = ceiling
        self.lookahead = max(1, int(round(LIMITER_LOOKAHEAD_S * sample_rate)))
        self.hold = max(self.lookahead, int(round(LIMITER_HOLD_S * sample_rate)))
        self.release_coefficient = math.exp(-1.0 / (LIMITER_RELEASE_S * sample_rate))

    def process(self, audio: np.ndarray, envelope: np.ndarray | None = None) -> LimiterResult:
        """Limit (channels, samples) audio.

        Parameters
        ----------
        audio
            Float array (channels, samples), full scale 1.0.
        envelope
            Per-sample peak magnitude to hold under the ceiling (the larger of true peak and
            sample peak across channels), when the caller already has it; computed otherwise.
        """
        if envelope is None:
            # No oversampled value exceeds filter_gain() times the largest sample: below that
            # the limiter has nothing to do, and oversampling would be wasted.
            if np.abs(audio).max() * truepeak.filter_gain() <= self.ceiling:
                return LimiterResult(audio=audio, reduction_db=0.0)
            envelope = np.maximum(true_peak_envelope(audio), np.abs(audio).max(axis=0))
        needed = np.minimum(1.0, self.ceiling / np.maximum(envelope, 1e-12))
        if needed.min() >= 1.0:
            return LimiterResult(audio=audio, reduction_db=0.0)
        # Window [n - hold, n + lookahead]: size hold+lookahead+1, shifted to look ahead.
        size = self.hold + self.lookahead + 1
        origin = (size // 2) - self.lookahead
        held = ndimage.minimum_filter1d(needed, size=size, origin=origin, mode="nearest")
        released = self._release(held)
        smooth = ndimage.uniform_filter1d(released, size=2 * self.lookahead + 1, mode="nearest")
        # The moving average can only stay at or below each peak's need; this guards rounding.
        gain = np.minimum(smooth, needed)
        return LimiterResult(audio=audio * gain, reduction_db=-gain_to_db(float(gain.min())))

    def _release(self, gain: np.ndarray) -> np.ndarray:
        # The gain reduction r (dB) follows every deeper demand at once and otherwise decays
        # exponentially: out[n] = max(r[n], out[n-1] * c). Unrolled, that is
        # out[n] = max over k <= n of r[k] * c**(n - k); in logs a running maximum, so it needs
        # no per-sample Python loop.
        reduction = -20.0 * np.log10(gain)
        if not np.any(reduction > 0):
            return gain
        decay_per_sample = -math.log(self.release_coefficient)
        steps = np.arange(reduction.size) * decay_per_sample
        with np.errstate(divide="ignore"):
            log_reduction = np.log(reduction)
        released = np.exp(np.maximum.accumulate(log_reduction + steps) - steps)
        return 10.0 ** (-released / 20.0)


@dataclass(frozen=True)
class NormalisedAudio:
    """Audio ready to write: (2, samples) float at 32 kHz, with what normalisation achieved."""

    audio: np.ndarray
    sample_rate: int
    #: Integrated loudness after processing, LUFS; None when shorter than one gating block or
    #: silent (:func:`dgx_music.audio.loudness.integrated_loudness`).
    integrated_lufs: float | None
    sample_peak: float
    true_peak_dbtp: float
    #: Make-up gain applied before limiting, dB.
    gain_db: float
    #: Deepest limiter gain reduction, dB.
    limiter_reduction_db: float
    flags: tuple[str, ...] = field(default_factory=tuple)
    #: The same samples as PCM16 integers, (channels, samples), when already rounded: lets
    #: :func:`encode_wav` skip rounding them again.
    pcm16: np.ndarray | None = field(default=None, repr=False, compare=False)


class LoudnessNormalizer:
    """Bring audio to a target integrated loudness under sample- and true-peak ceilings.

    Configured once from :class:`~dgx_music.config.Settings`; :meth:`process` takes only audio.

    Parameters
    ----------
    target_lufs
        Integrated loudness target, LUFS (BS.1770-4).
    true_peak_dbtp
        True-peak ceiling, dBTP.
    sample_peak
        Sample-peak ceiling, linear full scale (strictly below it after PCM16 rounding).
    """

    def __init__(
        self,
        target_lufs: float = -16.0,
        true_peak_dbtp: float = -1.0,
        sample_peak: float = 0.99,
    ) -> None:
        self.target_lufs = target_lufs
        self.true_peak_ceiling = db_to_gain(true_peak_dbtp)
        self.sample_peak_ceiling = sample_peak
        ceiling = min(self.true_peak_ceiling, sample_peak) * db_to_gain(-CEILING_MARGIN_DB)
        self.limiter = PeakLimiter(ceiling)

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> LoudnessNormalizer:
        settings = settings or get_settings()
        return cls(settings.target_lufs, settings.true_peak_dbtp, settings.sample_peak)

    def process(self, audio: np.ndarray, sample_rate: int) -> NormalisedAudio:
        """Resample, map to stereo, normalise loudness and limit peaks.

        Parameters
        ----------
        audio
            Float array (samples,) or (channels, samples) at any rate, full scale 1.0.
        sample_rate
            Rate of ``audio``, Hz.
        """
        stereo = to_output_layout(audio, sample_rate)
        energies = block_energies(stereo, OUTPUT_SAMPLE_RATE)
        loudness = None if energies is None else gated_loudness(energies)
        if energies is None or loudness is None or not math.isfinite(loudness):
            # Too short for one gating block, or every block gated out (silence).
            flag = FLAG_TOO_SHORT if loudness is None else FLAG_SILENT
            # No loudness to aim at: no gain, but peaks must still respect the ceilings.
            limited = self.limiter.process(stereo)
            return self._finish(limited.audio, 0.0, limited.reduction_db, (flag,))

        peak, peak_bounds = truepeak.peak_bounds(stereo)
        # What the limiter compares with its ceiling: the larger of true and sample peak.
        limiter_peak = max(peak, float(np.abs(stereo).max()))
        envelope: np.ndarray | None = None
        # The most make-up gain the limiter may absorb before the result is squashed, dB.
        max_gain_db = gain_to_db(self.limiter.ceiling / peak) + MAX_LIMITER_REDUCTION_DB
        gain_db = min(self.target_lufs - loudness, max_gain_db)
        previous: tuple[float, float] | None = None
        for _ in range(MAX_PASSES):
            gain = db_to_gain(gain_db)
            if gain * limiter_peak <= self.limiter.ceiling:
                # The limiter would leave every sample alone, so the output is the scaled input
                # and its block energies are the stored ones times gain**2: no filtering needed.
                output, reduction_db = stereo * gain, 0.0
                achieved = gated_loudness(energies, gain * gain)
                scaled_bounds: np.ndarray | None = peak_bounds * gain
            else:
                if envelope is None:
                    # Oversampled once; a gain only scales it (the oversampling is linear).
                    envelope = np.maximum(true_peak_envelope(stereo), np.abs(stereo).max(axis=0))
                limited = self.limiter.process(stereo * gain, envelope * gain)
                output, reduction_db = limited.audio, limited.reduction_db
                output_energies = block_energies(output, OUTPUT_SAMPLE_RATE)
                assert output_energies is not None  # the clip is long enough: checked above
                achieved = gated_loudness(output_energies)
                scaled_bounds = None
            error = self.target_lufs - achieved
            if abs(error) <= LOUDNESS_TOLERANCE_LU:
                return self._finish(output, gain_db, reduction_db, (), scaled_bounds)
            if gain_db >= max_gain_db and error > 0:
                break
            # Limiting makes loudness grow more slowly than gain: step along the secant of
            # the last two passes, or by the error itself on the first.
            step = error
            if previous is not None and gain_db != previous[0]:
                slope = (achieved - previous[1]) / (gain_db - previous[0])
                if slope > 0.05:
                    step = error / slope
            previous = (gain_db, achieved)
            gain_db = min(gain_db + step, max_gain_db)
        flags: tuple[str, ...] = ()
        if achieved < self.target_lufs - LOUDNESS_TOLERANCE_LU:
            flags = (FLAG_LOUDNESS_BELOW_TARGET,)
            logger.warning(
                "loudness target %.1f LUFS not reachable without over-limiting; wrote %.2f LUFS",
                self.target_lufs,
                achieved,
            )
        return self._finish(output, gain_db, reduction_db, flags, scaled_bounds)

    def _finish(
        self,
        audio: np.ndarray,
        gain_db: float,
        reduction_db: float,
        flags: tuple[str, ...] = (),
        peak_bounds: np.ndarray | None = None,
    ) -> NormalisedAudio:
        """Quantise and measure what will be written.

        ``peak_bounds``: per-block upper bounds of the true peak of ``audio`` (see
        :func:`truepeak.peak_bounds`), when known; they narrow the final true-peak search.
        """
        # Quantise here so every figure describes exactly the samples that reach the file.
        pcm16 = quantise_pcm16(audio)
        quantised = pcm16.astype(np.float64) / PCM16_FULL_SCALE
        measured = integrated_loudness(quantised, OUTPUT_SAMPLE_RATE)
        if peak_bounds is not None:
            # Oversampling is linear: the quantised signal's true peak differs from the
            # unquantised one's by at most filter_gain() times the largest rounding error.
            rounding = float(np.abs(quantised - audio).max()) * truepeak.filter_gain()
            peak_bounds = (peak_bounds + rounding) * (1.0 + truepeak.BOUND_SLACK)
        return NormalisedAudio(
            audio=quantised.astype(np.float32),
            sample_rate=OUTPUT_SAMPLE_RATE,
            integrated_lufs=measured,
            # On the integers: a quarter of the memory to scan (and no abs(-32768) overflow).
            sample_peak=max(int(pcm16.max()), -int(pcm16.min())) / PCM16_FULL_SCALE,
            true_peak_dbtp=gain_to_db(truepeak.true_peak(quantised, peak_bounds)),
            gain_db=gain_db,
            limiter_reduction_db=reduction_db,
            flags=flags,
            pcm16=pcm16,
        )


def quantise_pcm16(audio: np.ndarray) -> np.ndarray:
    """Round full-scale floats to int16 samples, (channels, samples) in and out."""
    scaled = np.clip(np.round(np.asarray(audio) * PCM16_FULL_SCALE), -32768, PCM16_FULL_SCALE)
    return scaled.astype(np.int16)


def encode_wav(audio: np.ndarray, sample_rate: int = OUTPUT_SAMPLE_RATE) -> bytes:
    """Encode (channels, samples) audio as PCM16 WAV bytes.

    Float audio (full scale 1.0) is rounded to PCM16; int16 audio is written as it is.
    """
    samples = audio if audio.dtype == np.int16 else quantise_pcm16(audio)
    buffer = io.BytesIO()
    soundfile.write(buffer, samples.T, sample_rate, subtype="PCM_16", format="WAV")
    return buffer.getvalue()


@dataclass(frozen=True)
class WrittenFile:
    path: Path
    size_bytes: int
    sha256: str

    @classmethod
    def of(cls, path: Path, data: bytes) -> WrittenFile:
        """Describe ``data`` written at ``path``."""
        return cls(path=path, size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest())


def describe_os_error(exc: OSError) -> str:
    """A short cause a person can act on, for an OSError raised while writing."""
    if exc.errno == errno.ENOSPC:
        return "disk full (no space left on device)"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if exc.errno == errno.ENOENT:
        return "directory missing"
    if exc.errno == errno.EROFS:
        return "read-only file system"
    return exc.strerror or str(exc)


def temp_path_pattern(final_path: Path) -> str:
    """Glob pattern matching the temp files :func:`write_temp` makes for ``final_path``."""
    return f".{final_path.name}.*.tmp"


def write_temp(data: bytes, final_path: Path) -> Path:
    """Write ``data`` to a fsynced temp file in ``final_path``'s directory and return its path.

    The temp file is named ``.<final name>.<random>.tmp`` so it can never be mistaken for a
    finished file. On any OSError nothing is left behind and :class:`ExportError` names the
    final path and the cause.
    """
    directory = final_path.parent
    if not directory.is_dir():
        raise ExportError(final_path, "directory missing")
    try:
        descriptor, name = tempfile.mkstemp(
            prefix=f".{final_path.name}.", suffix=".tmp", dir=directory
        )
    except OSError as exc:
        raise ExportError(final_path, describe_os_error(exc)) from exc
    temp = Path(name)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            view = memoryview(data)
            while view:
                written = os.write(handle.fileno(), view)
                view = view[written:]
            os.fsync(handle.fileno())
    except OSError as exc:
        temp.unlink(missing_ok=True)
        raise ExportError(final_path, describe_os_error(exc)) from exc
    return temp


def commit_temp(temp: Path, final_path: Path) -> None:
    """Rename a finished temp file into place and make the rename durable."""
    try:
        os.replace(temp, final_path)
        directory = os.open(final_path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    except OSError as exc:
        temp.unlink(missing_ok=True)
        raise ExportError(final_path, describe_os_error(exc)) from exc


def write_wav_atomic(
    audio: np.ndarray, path: Path, sample_rate: int = OUTPUT_SAMPLE_RATE
) -> WrittenFile:
    """Write (channels, samples) audio as PCM16 WAV: temp file, fsync, rename."""
    data = encode_wav(audio, sample_rate)
    temp = write_temp(data, path)
    commit_temp(temp, path)
    return WrittenFile.of(path, data)


@dataclass(frozen=True)
class ExportResult:
    """A written file and the loudness and peak figures of exactly what it holds."""

    path: Path
    size_bytes: int
    sha256: str
    sample_rate: int
    channels: int
    frames: int
    integrated_lufs: float | None
    sample_peak: float
    true_peak_dbtp: float
    gain_db: float
    limiter_reduction_db: float
    flags: tuple[str, ...]

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate


def export_wav(
    audio: np.ndarray,
    sample_rate: int,
    path: Path | str,
    *,
    normalizer: LoudnessNormalizer | None = None,
) -> ExportResult:
    """Normalise ``audio`` and write it to ``path`` as 32 kHz stereo PCM16 WAV, atomically.

    Raises
    ------
    InvalidAudioError
        NaN/Inf values or an unusable shape.
    ExportError
        The directory is missing, not writable, or the disk is full; no temp file remains.
    """
    normalised = (normalizer or LoudnessNormalizer.from_settings()).process(audio, sample_rate)
    samples = normalised.audio if normalised.pcm16 is None else normalised.pcm16
    written = write_wav_atomic(samples, Path(path), normalised.sample_rate)
    return export_result(normalised, written)


def export_result(normalised: NormalisedAudio, written: WrittenFile) -> ExportResult:
    return ExportResult(
        path=written.path,
        size_bytes=written.size_bytes,
        sha256=written.sha256,
        sample_rate=normalised.sample_rate,
        channels=normalised.audio.shape[0],
        frames=normalised.audio.shape[1],
        integrated_lufs=normalised.integrated_lufs,
        sample_peak=normalised.sample_peak,
        true_peak_dbtp=normalised.true_peak_dbtp,
        gain_db=normalised.gain_db,
        limiter_reduction_db=normalised.limiter_reduction_db,
        flags=normalised.flags,
    )
