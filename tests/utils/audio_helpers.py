"""Checks on written WAV files, as the integration suite specifies them.

Each helper reads the file back from disk and measures it independently of the exporter's own
figures (pyloudnorm for loudness, numpy for peaks), so a test using them cannot pass merely
because the exporter reported what it intended to write.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyloudnorm
import soundfile
import torch

from dgx_music.audio.export import true_peak_dbtp


def read_channels_first(file_path: Path | str) -> tuple[np.ndarray, int]:
    data, rate = soundfile.read(str(file_path), dtype="float64", always_2d=True)
    return data.T, int(rate)


def validate_wav_file(
    file_path: Path | str,
    expected_sample_rate: int = 32_000,
    expected_channels: int = 2,
    expected_bit_depth: str = "PCM_16",
) -> dict[str, Any]:
    """Format facts of a WAV file and whether each matches what was expected."""
    info = soundfile.info(str(file_path))
    audio, _ = read_channels_first(file_path)
    result = {
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
    result["valid"] = (
        info.format == "WAV"
        and result["sample_rate_ok"]
        and result["channels_ok"]
        and result["bit_depth_ok"]
        and result["finite"]
        and info.frames > 0
    )
    return result


def measure_loudness(file_path: Path | str) -> float | None:
    """Integrated loudness of the file, LUFS (BS.1770-4); None when too short or silent."""
    audio, rate = read_channels_first(file_path)
    if audio.shape[1] < int(0.4 * rate):
        return None
    loudness = pyloudnorm.Meter(rate).integrated_loudness(audio.T)
    return float(loudness) if np.isfinite(loudness) else None


def check_no_clipping(file_path: Path | str, threshold: float = 0.99) -> tuple[bool, float]:
    """(has clipping, sample peak): clipping means a sample at or above ``threshold``."""
    audio, _ = read_channels_first(file_path)
    peak = float(np.abs(audio).max())
    return peak >= threshold, peak


def verify_audio_quality(
    file_path: Path | str,
    target_lufs: float = -16.0,
    lufs_tolerance: float = 1.0,
    clip_threshold: float = 0.99,
) -> dict[str, Any]:
    """Format, loudness, peaks, RMS and dynamic range of a file, and whether they pass."""
    audio, _ = read_channels_first(file_path)
    wav = validate_wav_file(file_path)
    loudness = measure_loudness(file_path)
    clipping, peak = check_no_clipping(file_path, clip_threshold)
    rms = float(np.sqrt(np.mean(audio**2)))
    peak_db = 20 * np.log10(peak) if peak > 0 else float("-inf")
    rms_db = 20 * np.log10(rms) if rms > 0 else float("-inf")
    report = {
        **wav,
        "lufs": loudness,
        "lufs_ok": loudness is not None and abs(loudness - target_lufs) <= lufs_tolerance,
        "peak": peak,
        "clipping": clipping,
        "true_peak_dbtp": true_peak_dbtp(audio),
        "rms": rms,
        "dynamic_range_db": peak_db - rms_db,
    }
    report["passed"] = bool(report["valid"] and report["lufs_ok"] and not clipping)
    return report


def compare_audio_properties(
    file_path: Path | str, expected_duration: float, duration_tolerance: float = 1.0
) -> dict[str, Any]:
    """Duration of the file against the request."""
    duration = soundfile.info(str(file_path)).duration
    return {
        "duration": duration,
        "expected_duration": expected_duration,
        "difference": abs(duration - expected_duration),
        "duration_ok": abs(duration - expected_duration) <= duration_tolerance,
    }


def stereo_balance_db(file_path: Path | str) -> float:
    """Left RMS over right RMS, dB (0 is centred)."""
    audio, _ = read_channels_first(file_path)
    left, right = np.sqrt(np.mean(audio**2, axis=1))
    return float(20 * np.log10(left / right))


def create_test_audio_tensor(
    duration: float = 1.0,
    sample_rate: int = 32_000,
    channels: int = 2,
    frequency: float = 440.0,
) -> torch.Tensor:
    """A 0.5-amplitude sine, (channels, samples) float32."""
    t = torch.arange(int(round(duration * sample_rate)), dtype=torch.float64) / sample_rate
    tone = 0.5 * torch.sin(2 * torch.pi * frequency * t)
    return tone.repeat(channels, 1).to(torch.float32)
