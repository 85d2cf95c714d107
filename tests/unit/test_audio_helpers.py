"""The audio helpers pass a compliant file and reject each kind of bad one.

Compliant files come from the real exporter; bad files are written directly with
:func:`write_test_wav`, one fault each, so every check is seen to fail on its own.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyloudnorm
import pytest
import torch

from dgx_music.audio.export import export_wav
from dgx_music.audio.export import true_peak_dbtp as exporter_true_peak_dbtp
from tests.utils import signals
from tests.utils.audio_helpers import (
    assert_audio_quality,
    audio_statistics,
    channel_correlation,
    check_no_clipping,
    compare_audio_properties,
    create_test_audio_tensor,
    is_silent,
    measure_loudness,
    measure_true_peak,
    read_channels_first,
    stereo_balance_db,
    true_peak_dbtp,
    validate_wav_file,
    verify_audio_quality,
    write_test_wav,
)

RATE = 32_000


@pytest.fixture(scope="module")
def good_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three seconds of a drum loop through the real exporter: -16 LUFS, PCM16, stereo."""
    path = tmp_path_factory.mktemp("good") / "good.wav"
    export_wav(signals.drum_loop(3.0), RATE, path)
    return path


def at_lufs(audio: np.ndarray, lufs: float, rate: int = RATE) -> np.ndarray:
    """``audio`` scaled to ``lufs`` integrated loudness (no limiting: it may clip)."""
    measured = pyloudnorm.Meter(rate).integrated_loudness(audio.T)
    return audio * 10 ** ((lufs - measured) / 20)


def test_a_compliant_file_passes_every_check(good_wav: Path):
    report = verify_audio_quality(good_wav)
    assert report["passed"], report["errors"]
    assert measure_true_peak(good_wav) == report["true_peak_dbtp"]
    assert report["errors"] == []
    assert (report["sample_rate"], report["channels"], report["subtype"]) == (RATE, 2, "PCM_16")
    assert report["lufs"] == pytest.approx(-16.0, abs=0.2)
    assert report["true_peak_dbtp"] <= -1.0 and report["peak"] < 0.99
    assert not report["clipping"] and not report["silent"]
    assert assert_audio_quality(good_wav)["passed"]


@pytest.mark.parametrize(
    ("case", "rate", "audio", "subtype", "field"),
    [
        ("wrong rate", 44_100, signals.sine(1.0, sample_rate=44_100, amplitude=0.3), "PCM_16",
         "sample_rate"),
        ("mono", RATE, signals.sine(1.0, channels=1, amplitude=0.3), "PCM_16", "channels"),
        ("24-bit", RATE, signals.sine(1.0, amplitude=0.3), "PCM_24", "subtype"),
        ("float", RATE, signals.sine(1.0, amplitude=0.3), "FLOAT", "subtype"),
    ],
)  # fmt: skip
def test_validate_wav_file_rejects_the_wrong_format(
    tmp_path: Path, case: str, rate: int, audio: np.ndarray, subtype: str, field: str
):
    path = write_test_wav(tmp_path / "bad.wav", audio, rate, subtype)
    report = validate_wav_file(path)
    assert not report["valid"], case
    assert len(report["errors"]) == 1 and report["errors"][0].startswith(f"{field}:"), report
    assert not verify_audio_quality(path)["passed"]


def test_nan_samples_are_reported_not_measured(tmp_path: Path):
    audio = signals.sine(1.0, amplitude=0.3)
    audio[:, 100] = np.nan
    path = write_test_wav(tmp_path / "nan.wav", audio, subtype="FLOAT")
    report = validate_wav_file(path, expected_bit_depth="FLOAT")
    assert not report["finite"] and not report["valid"]
    assert report["errors"] == ["samples: NaN or infinite values present"]
    assert measure_loudness(path) is None
    clipping, peak = check_no_clipping(path)
    assert clipping and math.isnan(peak)
    quality = verify_audio_quality(path)
    assert not quality["passed"] and not quality["true_peak_ok"]
    with pytest.raises(ValueError, match="NaN"):
        true_peak_dbtp(read_channels_first(path)[0])


def test_an_empty_or_unreadable_file_is_invalid(tmp_path: Path):
    empty = write_test_wav(tmp_path / "empty.wav", np.zeros((2, 0)))
    assert validate_wav_file(empty)["errors"] == ["frames: the file holds no audio"]
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"RIFF not really a wave file")
    report = validate_wav_file(garbage)
    assert not report["valid"] and report["errors"][0].startswith("file: cannot be read")
    assert not verify_audio_quality(garbage)["passed"]


def test_clipped_audio_is_caught(tmp_path: Path):
    # A drum loop pushed 12 dB into the ceiling, hard-clipped as a careless exporter would.
    audio = np.clip(signals.drum_loop(2.0) * 8, -1, 1)
    path = write_test_wav(tmp_path / "clipped.wav", audio)
    clipping, peak = check_no_clipping(path)
    assert clipping and peak >= 0.99
    report = verify_audio_quality(path, lufs_tolerance=100)  # only the peak checks may fail
    assert not report["passed"]
    assert any(error.startswith("peak:") for error in report["errors"])
    assert any(error.startswith("true_peak_dbtp:") for error in report["errors"])
    with pytest.raises(AssertionError, match="peak"):
        assert_audio_quality(path, lufs_tolerance=100)


def test_a_peak_just_under_the_threshold_is_not_clipping(tmp_path: Path):
    path = write_test_wav(tmp_path / "near.wav", signals.sine(1.0, frequency=100, amplitude=0.98))
    clipping, peak = check_no_clipping(path)
    assert not clipping and peak == pytest.approx(0.98, abs=1e-4)
    assert check_no_clipping(path, threshold=0.9)[0]


@pytest.mark.parametrize(("lufs", "passes"), [(-9.0, False), (-16.4, True), (-23.0, False)])
def test_loudness_outside_the_tolerance_fails(tmp_path: Path, lufs: float, passes: bool):
    audio = at_lufs(signals.noise(2.0, rms=0.05), lufs)
    path = write_test_wav(tmp_path / "loud.wav", audio)
    assert measure_loudness(path) == pytest.approx(lufs, abs=0.05)
    report = verify_audio_quality(path, max_true_peak_dbtp=0.0, clip_threshold=1.0)
    assert report["lufs_ok"] is passes
    assert any(error.startswith("lufs:") for error in report["errors"]) is not passes


def test_loudness_is_none_for_silence_and_for_clips_under_one_block(tmp_path: Path):
    silent = write_test_wav(tmp_path / "silent.wav", np.zeros((2, RATE)))
    assert measure_loudness(silent) is None
    assert is_silent(silent)
    report = verify_audio_quality(silent)
    assert not report["passed"] and report["silent"]
    short = write_test_wav(tmp_path / "short.wav", signals.sine(0.3, amplitude=0.3))
    assert measure_loudness(short) is None


def test_true_peak_finds_the_inter_sample_peak_and_agrees_with_the_exporter():
    # A quarter-rate sine at 45° phase: every sample is at 0.707 of the wave's real peak.
    t = np.arange(RATE) / RATE
    tone = 0.7 * np.sin(2 * np.pi * (RATE / 4) * t + np.pi / 4)[np.newaxis, :]
    sample_peak_db = 20 * np.log10(np.abs(tone).max())
    assert sample_peak_db == pytest.approx(20 * np.log10(0.7) - 3.01, abs=0.02)
    ours = true_peak_dbtp(tone)
    assert ours == pytest.approx(20 * np.log10(0.7), abs=0.15)
    # Two implementations (filter, design) agree on music-like material within 0.2 dB.
    loop = signals.drum_loop(2.0)
    assert true_peak_dbtp(loop) == pytest.approx(exporter_true_peak_dbtp(loop), abs=0.2)
    assert true_peak_dbtp(np.zeros((2, 0))) == -math.inf


def test_compare_audio_properties_checks_duration(good_wav: Path):
    assert compare_audio_properties(good_wav, 3.0)["duration_ok"]
    assert compare_audio_properties(good_wav, 3.9)["duration_ok"]
    off = compare_audio_properties(good_wav, 4.5)
    assert not off["duration_ok"] and off["difference"] == pytest.approx(1.5)
    with pytest.raises(ValueError, match="expected_duration"):
        compare_audio_properties(good_wav, 0)


def test_statistics_balance_and_correlation(tmp_path: Path, good_wav: Path):
    stats = audio_statistics(good_wav)
    assert 0 < stats["rms"] < stats["peak"] < 0.99
    assert stats["dynamic_range_db"] == pytest.approx(stats["peak_dbfs"] - stats["rms_dbfs"])
    assert stats["dc_offset"] < 0.01
    left_heavy = signals.sine(1.0, amplitude=0.4)
    left_heavy[1] *= 0.5
    path = write_test_wav(tmp_path / "left.wav", left_heavy)
    assert stereo_balance_db(path) == pytest.approx(6.02, abs=0.01)
    assert channel_correlation(path) == pytest.approx(1.0, abs=1e-6)
    inverted = signals.noise(1.0)
    inverted[1] = -inverted[0]
    assert channel_correlation(write_test_wav(tmp_path / "inv.wav", inverted)) < -0.99
    mono = write_test_wav(tmp_path / "mono.wav", signals.sine(1.0, channels=1, amplitude=0.3))
    with pytest.raises(ValueError, match="channels"):
        stereo_balance_db(mono)
    with pytest.raises(ValueError, match="channels"):
        channel_correlation(mono)


def test_create_test_audio_tensor_shape_and_limits():
    tone = create_test_audio_tensor(duration=0.5, sample_rate=16_000, channels=1, frequency=1000)
    assert tone.shape == (1, 8_000) and tone.dtype == torch.float32
    assert float(tone.abs().max()) == pytest.approx(0.5, abs=1e-3)
    # 1000 Hz at 16 kHz: one period every 16 samples.
    assert torch.allclose(tone[0, :16], tone[0, 16:32], atol=1e-5)
    with pytest.raises(ValueError, match="frequency"):
        create_test_audio_tensor(frequency=20_000)
    with pytest.raises(ValueError, match="duration"):
        create_test_audio_tensor(duration=0)


def test_the_spec_audio_fixtures(test_audio_tensor, test_audio_file: Path, mock_settings):
    assert test_audio_tensor.shape == (2, RATE) and test_audio_tensor.dtype == torch.float32
    assert test_audio_file.parent == mock_settings.output_dir
    assert mock_settings.device == "cpu" and mock_settings.poll_seconds == 0.05
    report = verify_audio_quality(test_audio_file)
    assert report["passed"], report["errors"]
    assert compare_audio_properties(test_audio_file, 1.0)["difference"] < 1e-3
