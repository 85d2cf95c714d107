"""Checks on written WAV files, as the integration suite specifies them.

Each helper reads the file back from disk and measures it independently of the exporter: loudness
with pyloudnorm (BS.1770-4) called here, peaks with numpy, and the true peak with
:func:`true_peak_dbtp`, a 4x oversampling interpolator through a Blackman-windowed sinc designed
in this file (:mod:`dgx_music.audio.export` uses scipy's Kaiser-windowed ``resample_poly``). A test
using them cannot pass merely because the exporter reported what it intended to write, nor
because one true-peak implementation agrees with itself.

The spec's six (``validate_wav_file``, ``measure_loudness``, ``check_no_clipping``,
``verify_audio_quality``, ``compare_audio_properties``, ``create_test_audio_tensor``) keep its
names, parameters and return shapes; the rest support them and the tests that feed them bad files.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pyloudnorm
import soundfile
import torch
from scipy import signal

#: Output format the service promises (DESIGN.md).
EXPECTED_SAMPLE_RATE = 32_000  # Hz
EXPECTED_CHANNELS = 2
EXPECTED_SUBTYPE = "PCM_16"
TARGET_LUFS = -16.0  # LUFS
MAX_TRUE_PEAK_DBTP = -1.0  # dBTP
CLIP_THRESHOLD = 0.99  # linear full scale
#: True-peak oversampling factor and interpolation filter half-length (zero crossings per side).
TRUE_PEAK_OVERSAMPLING = 4
TRUE_PEAK_ZERO_CROSSINGS = 12
#: BS.1770 needs at least one 400 ms gating block.
MIN_LOUDNESS_SECONDS = 0.4
#: Below this RMS a file counts as silent, dBFS.
SILENCE_DBFS = -60.0


def read_channels_first(file_path: Path | str) -> tuple[np.ndarray, int]:
    """(audio as float64 (channels, samples), sample rate Hz) from a sound file."""
    data, rate = soundfile.read(str(file_path), dtype="float64", always_2d=True)
    return data.T, int(rate)


def write_test_wav(
    file_path: Path | str,
    audio: np.ndarray,
    sample_rate: int = EXPECTED_SAMPLE_RATE,
    subtype: str = EXPECTED_SUBTYPE,
) -> Path:
    """Write (channels, samples) ``audio`` as a WAV of ``subtype``; return the path.

    Used to make the bad files the helpers must reject (mono, 24-bit, float with NaN...).
    """
    audio = np.atleast_2d(np.asarray(audio, dtype=np.float64))
    path = Path(file_path)
    soundfile.write(str(path), audio.T, sample_rate, subtype=subtype, format="WAV")
    return path


def _db(linear: float) -> float:
    return 20 * math.log10(linear) if linear > 0 else -math.inf


def _interpolation_filter(factor: int, zero_crossings: int) -> np.ndarray:
    # An ideal low-pass at the original Nyquist (sinc), cut to +-zero_crossings input samples
    # and tapered with a Blackman window; gain ``factor`` restores the zero-stuffed level.
    half = zero_crossings * factor
    n = np.arange(-half, half + 1)
    return np.sinc(n / factor) * np.blackman(n.size)


def true_peak_dbtp(audio: np.ndarray, oversampling: int = TRUE_PEAK_OVERSAMPLING) -> float:
    """True peak of (channels, samples) audio, dBTP, estimated by oversampling.

    BS.1770-4 Annex 2 estimates the inter-sample peak by interpolating at 4x or more; this
    interpolates at ``oversampling`` x through a Blackman-windowed sinc designed here, independent
    of the exporter's own estimate. The sample peak bounds it from below.
    """
    audio = np.atleast_2d(np.asarray(audio, dtype=np.float64))
    if audio.size == 0:
        return -math.inf
    if not np.all(np.isfinite(audio)):
        raise ValueError("audio: contains NaN or infinite samples; no true peak exists")
    taps = _interpolation_filter(oversampling, TRUE_PEAK_ZERO_CROSSINGS)
    # upfirdn zero-stuffs and filters in one polyphase pass (the filter is ours, not scipy's).
    interpolated = signal.upfirdn(taps, audio, up=oversampling, axis=-1)
    peak = max(float(np.abs(interpolated).max()), float(np.abs(audio).max()))
    return _db(peak)


def measure_true_peak(file_path: Path | str) -> float:
    """True peak of a file, dBTP, by :func:`true_peak_dbtp`."""
    audio, _ = read_channels_first(file_path)
    return true_peak_dbtp(audio)


def validate_wav_file(
    file_path: Path | str,
    expected_sample_rate: int = EXPECTED_SAMPLE_RATE,
    expected_channels: int = EXPECTED_CHANNELS,
    expected_bit_depth: str = EXPECTED_SUBTYPE,
) -> dict[str, Any]:
    """Format facts of a WAV file and whether each matches what was expected.

    Returns
    -------
    dict
        ``format``, ``subtype``, ``sample_rate`` (Hz), ``channels``, ``frames``, ``duration``
        (s), ``finite`` (no NaN/Inf sample), one ``*_ok`` flag per expectation, ``errors`` (one
        sentence per failed check, naming the field and the limit) and ``valid``. A file that
        cannot be read gives ``valid`` False with the reader's message in ``errors``.
    """
    try:
        info = soundfile.info(str(file_path))
        audio, _ = read_channels_first(file_path)
    except (RuntimeError, soundfile.LibsndfileError) as exc:
        return {"valid": False, "errors": [f"file: cannot be read as audio ({exc})"]}
    result: dict[str, Any] = {
        "format": info.format,
        "subtype": info.subtype,
        "sample_rate": info.samplerate,
        "channels": info.channels,
        "frames": info.frames,
        "duration": info.duration,
        "finite": bool(np.all(np.isfinite(audio))),
        "sample_rate_ok": info.samplerate == expected_sample_rate,
        "channels_ok": info.channels == expected_channels,
        "bit_depth_ok": info.subtype == expected_bit_depth,
    }
    errors = []
    if info.format != "WAV":
        errors.append(f"format: {info.format}, expected WAV")
    if not result["sample_rate_ok"]:
        errors.append(f"sample_rate: {info.samplerate} Hz, expected {expected_sample_rate} Hz")
    if not result["channels_ok"]:
        errors.append(f"channels: {info.channels}, expected {expected_channels}")
    if not result["bit_depth_ok"]:
        errors.append(f"subtype: {info.subtype}, expected {expected_bit_depth}")
    if not result["finite"]:
        errors.append("samples: NaN or infinite values present")
    if info.frames == 0:
        errors.append("frames: the file holds no audio")
    result["errors"] = errors
    result["valid"] = not errors
    return result


def measure_loudness(file_path: Path | str) -> float | None:
    """Integrated loudness of the file, LUFS (BS.1770-4); None when too short, silent or not
    finite."""
    audio, rate = read_channels_first(file_path)
    if audio.shape[1] < int(MIN_LOUDNESS_SECONDS * rate) or not np.all(np.isfinite(audio)):
        return None
    loudness = pyloudnorm.Meter(rate).integrated_loudness(audio.T)
    return float(loudness) if np.isfinite(loudness) else None


def check_no_clipping(
    file_path: Path | str, threshold: float = CLIP_THRESHOLD
) -> tuple[bool, float]:
    """(has clipping, sample peak): clipping means a sample magnitude at or above ``threshold``
    (linear full scale). A NaN sample counts as clipping, with a NaN peak."""
    audio, _ = read_channels_first(file_path)
    if not np.all(np.isfinite(audio)):
        return True, math.nan
    peak = float(np.abs(audio).max()) if audio.size else 0.0
    return peak >= threshold, peak


def audio_statistics(file_path: Path | str) -> dict[str, float]:
    """Sample peak (linear and dBFS), RMS (linear and dBFS), crest factor ("dynamic range", dB)
    and DC offset (largest channel mean) of a file."""
    audio, _ = read_channels_first(file_path)
    peak = float(np.abs(audio).max()) if audio.size else 0.0
    rms = float(np.sqrt(np.mean(audio**2))) if audio.size else 0.0
    return {
        "peak": peak,
        "peak_dbfs": _db(peak),
        "rms": rms,
        "rms_dbfs": _db(rms),
        "dynamic_range_db": _db(peak) - _db(rms) if rms > 0 else math.nan,
        "dc_offset": float(np.abs(audio.mean(axis=1)).max()) if audio.size else 0.0,
    }


def is_silent(file_path: Path | str, threshold_dbfs: float = SILENCE_DBFS) -> bool:
    """Whether the file's RMS lies below ``threshold_dbfs``."""
    return audio_statistics(file_path)["rms_dbfs"] < threshold_dbfs


def verify_audio_quality(
    file_path: Path | str,
    target_lufs: float = TARGET_LUFS,
    lufs_tolerance: float = 1.0,
    clip_threshold: float = CLIP_THRESHOLD,
    max_true_peak_dbtp: float = MAX_TRUE_PEAK_DBTP,
) -> dict[str, Any]:
    """Format, loudness, peaks, RMS and dynamic range of a file, and whether they pass.

    Returns
    -------
    dict
        Everything :func:`validate_wav_file` reports, plus ``lufs``, ``lufs_ok``, ``peak``,
        ``clipping``, ``true_peak_dbtp``, ``true_peak_ok``, ``rms``, ``dynamic_range_db``,
        ``silent``, and ``passed``; ``errors`` gains one sentence per failed quality check.
    """
    wav = validate_wav_file(file_path)
    if "format" not in wav:  # unreadable
        return {**wav, "passed": False}
    loudness = measure_loudness(file_path)
    clipping, peak = check_no_clipping(file_path, clip_threshold)
    audio, _ = read_channels_first(file_path)
    finite = wav["finite"]
    statistics = audio_statistics(file_path) if finite else {}
    true_peak = true_peak_dbtp(audio) if finite else math.nan
    report: dict[str, Any] = {
        **wav,
        "lufs": loudness,
        "lufs_ok": loudness is not None and abs(loudness - target_lufs) <= lufs_tolerance,
        "peak": peak,
        "clipping": clipping,
        "true_peak_dbtp": true_peak,
        "true_peak_ok": finite and true_peak <= max_true_peak_dbtp,
        "rms": statistics.get("rms", math.nan),
        "dynamic_range_db": statistics.get("dynamic_range_db", math.nan),
        "silent": finite and statistics["rms_dbfs"] < SILENCE_DBFS,
    }
    errors = list(wav["errors"])
    if not report["lufs_ok"]:
        errors.append(f"lufs: {loudness}, expected {target_lufs} ± {lufs_tolerance} LU")
    if clipping:
        errors.append(f"peak: {peak:.4f}, must stay below {clip_threshold}")
    if not report["true_peak_ok"]:
        errors.append(f"true_peak_dbtp: {true_peak:.2f}, must be <= {max_true_peak_dbtp} dBTP")
    if report["silent"]:
        errors.append(f"rms: below {SILENCE_DBFS} dBFS, the file is silent")
    report["errors"] = errors
    report["passed"] = not errors
    return report


def compare_audio_properties(
    file_path: Path | str, expected_duration: float, duration_tolerance: float = 1.0
) -> dict[str, Any]:
    """Duration of the file (s) against the request: ``duration``, ``expected_duration``,
    ``difference`` and ``duration_ok`` (within ``duration_tolerance`` seconds)."""
    if expected_duration <= 0:
        raise ValueError(f"expected_duration: {expected_duration} s; must be > 0")
    duration = soundfile.info(str(file_path)).duration
    return {
        "duration": duration,
        "expected_duration": expected_duration,
        "difference": abs(duration - expected_duration),
        "duration_ok": abs(duration - expected_duration) <= duration_tolerance,
    }


def stereo_balance_db(file_path: Path | str) -> float:
    """Left RMS over right RMS, dB (0 is centred; +inf when the right channel is silent)."""
    audio, _ = read_channels_first(file_path)
    if audio.shape[0] != 2:
        raise ValueError(f"channels: {audio.shape[0]}; stereo balance needs 2")
    left, right = np.sqrt(np.mean(audio**2, axis=1))
    if right == 0:
        return math.inf if left > 0 else 0.0
    return _db(float(left)) - _db(float(right))


def channel_correlation(file_path: Path | str) -> float:
    """Pearson correlation of the left and right channels (1: mono in two channels, -1: one
    channel inverted, which collapses to silence when summed to mono)."""
    audio, _ = read_channels_first(file_path)
    if audio.shape[0] != 2:
        raise ValueError(f"channels: {audio.shape[0]}; correlation needs 2")
    left, right = audio
    if left.std() == 0 or right.std() == 0:
        return 0.0
    return float(np.corrcoef(left, right)[0, 1])


def assert_audio_quality(file_path: Path | str, **limits: Any) -> dict[str, Any]:
    """:func:`verify_audio_quality`, raising AssertionError that lists every failed check."""
    report = verify_audio_quality(file_path, **limits)
    if not report["passed"]:
        raise AssertionError(f"{file_path}: " + "; ".join(report["errors"]))
    return report


def create_test_audio_tensor(
    duration: float = 1.0,
    sample_rate: int = EXPECTED_SAMPLE_RATE,
    channels: int = EXPECTED_CHANNELS,
    frequency: float = 440.0,
) -> torch.Tensor:
    """A 0.5-amplitude sine, (channels, samples) float32.

    Raises
    ------
    ValueError
        A non-positive duration, rate or channel count, or a frequency outside (0, Nyquist).
    """
    if duration <= 0 or sample_rate <= 0 or channels <= 0:
        raise ValueError(
            f"duration/sample_rate/channels: {duration} s, {sample_rate} Hz, {channels}; "
            "all must be > 0"
        )
    if not 0 < frequency < sample_rate / 2:
        raise ValueError(f"frequency: {frequency} Hz; must be in (0, {sample_rate / 2}) Hz")
    t = torch.arange(int(round(duration * sample_rate)), dtype=torch.float64) / sample_rate
    tone = 0.5 * torch.sin(2 * torch.pi * frequency * t)
    return tone.repeat(channels, 1).to(torch.float32)
