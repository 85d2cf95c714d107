"""Checks a written WAV file against the output specification.

Used by the pipeline before a job is marked completed, by ``dgx-music db check`` and by the
tests. The file is read back from disk so that what is checked is what a listener gets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile

from dgx_music.audio.export import (
    FLAG_LOUDNESS_BELOW_TARGET,
    FLAG_SILENT,
    FLAG_TOO_SHORT,
    true_peak_dbtp,
)
from dgx_music.audio.loudness import integrated_loudness
from dgx_music.config import OUTPUT_CHANNELS, OUTPUT_SAMPLE_RATE, Settings, get_settings

#: Loudness of the written file may differ from the target by this much, LU.
FILE_LOUDNESS_TOLERANCE_LU = 0.2


@dataclass(frozen=True)
class QualityReport:
    """What a WAV file holds and which rules of the output specification it breaks."""

    path: Path
    sample_rate: int
    channels: int
    subtype: str
    frames: int
    integrated_lufs: float | None
    sample_peak: float
    true_peak_dbtp: float
    problems: tuple[str, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0


def read_wav(path: Path | str) -> tuple[np.ndarray, int]:
    """Read a WAV file as float64 (channels, samples) and its rate in Hz."""
    data, rate = soundfile.read(str(path), dtype="float64", always_2d=True)
    return np.ascontiguousarray(data.T), int(rate)


def check_wav(
    path: Path | str,
    *,
    flags: tuple[str, ...] = (),
    settings: Settings | None = None,
) -> QualityReport:
    """Check format, finiteness, loudness and peaks of the WAV file at ``path``.

    Parameters
    ----------
    path
        The file to check.
    flags
        Flags the exporter recorded for this file: a ``silent``, ``too_short_for_loudness`` or
        ``loudness_below_target`` file is not held to the loudness target (peaks still are).
    """
    settings = settings or get_settings()
    info = soundfile.info(str(path))
    audio, rate = read_wav(path)
    problems: list[str] = []
    if info.format != "WAV" or info.subtype != "PCM_16":
        problems.append(f"format is {info.format}/{info.subtype}, expected WAV/PCM_16")
    if rate != OUTPUT_SAMPLE_RATE:
        problems.append(f"sample rate is {rate} Hz, expected {OUTPUT_SAMPLE_RATE}")
    if audio.shape[0] != OUTPUT_CHANNELS:
        problems.append(f"{audio.shape[0]} channels, expected {OUTPUT_CHANNELS}")
    if not np.all(np.isfinite(audio)):
        problems.append("contains NaN or infinite samples")
    sample_peak = float(np.abs(audio).max()) if audio.size else 0.0
    peak_dbtp = true_peak_dbtp(audio) if audio.size else float("-inf")
    if sample_peak >= settings.sample_peak:
        problems.append(f"sample peak {sample_peak:.4f} is not below {settings.sample_peak}")
    if peak_dbtp > settings.true_peak_dbtp + 1e-6:
        problems.append(f"true peak {peak_dbtp:.2f} dBTP exceeds {settings.true_peak_dbtp} dBTP")
    loudness = integrated_loudness(audio, rate) if audio.size else None
    exempt = {FLAG_SILENT, FLAG_TOO_SHORT, FLAG_LOUDNESS_BELOW_TARGET} & set(flags)
    if not exempt:
        if loudness is None:
            problems.append(
                "has no integrated loudness (shorter than one 400 ms block, or silent) "
                "but is not flagged as such"
            )
        elif abs(loudness - settings.target_lufs) > FILE_LOUDNESS_TOLERANCE_LU:
            problems.append(
                f"integrated loudness {loudness:.2f} LUFS is not within "
                f"{FILE_LOUDNESS_TOLERANCE_LU} LU of {settings.target_lufs} LUFS"
            )
    return QualityReport(
        path=Path(path),
        sample_rate=rate,
        channels=audio.shape[0],
        subtype=info.subtype,
        frames=audio.shape[1],
        integrated_lufs=loudness,
        sample_peak=sample_peak,
        true_peak_dbtp=peak_dbtp,
        problems=tuple(problems),
    )
