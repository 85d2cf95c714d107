"""Export: format, loudness on the written file, peak limiting, flags and atomic writes."""

from __future__ import annotations

import errno
import tempfile
from pathlib import Path

import numpy as np
import pyloudnorm
import pytest
import soundfile

from dgx_music.audio import export, quality
from dgx_music.audio.export import (
    FLAG_LOUDNESS_BELOW_TARGET,
    FLAG_SILENT,
    FLAG_TOO_SHORT,
    LoudnessNormalizer,
    export_wav,
    to_output_layout,
)
from dgx_music.errors import ExportError, InvalidAudioError
from tests.utils import signals


def measure_file(path: Path) -> tuple[float, float, float]:
    """(integrated LUFS, sample peak, true peak dBTP) of a file, measured independently."""
    data, rate = soundfile.read(str(path), dtype="float64", always_2d=True)
    lufs = pyloudnorm.Meter(rate).integrated_loudness(data)
    return lufs, float(np.abs(data).max()), export.true_peak_dbtp(data.T)


MUSIC_LIKE = {
    "noise": lambda: signals.noise(8.0, rms=0.05),
    "loud_noise": lambda: signals.noise(8.0, rms=0.6),
    "sine": lambda: signals.sine(8.0, amplitude=0.2),
    "drums_60": lambda: signals.drum_loop(8.0, bpm=60),
    "drums_120": lambda: signals.drum_loop(8.0, bpm=120),
    "drums_180": lambda: signals.drum_loop(8.0, bpm=180),
    "quiet_chord": lambda: signals.sine(8.0, 220, 0.01) + signals.sine(8.0, 277.2, 0.01),
}


@pytest.mark.parametrize("name", sorted(MUSIC_LIKE))
def test_music_like_material_meets_loudness_and_peaks_on_the_file(name: str, tmp_path: Path):
    result = export_wav(MUSIC_LIKE[name](), 32_000, tmp_path / "out.wav")
    lufs, sample_peak, true_peak = measure_file(result.path)
    assert abs(lufs - (-16.0)) <= 0.2
    assert sample_peak < 0.99
    assert true_peak <= -1.0
    assert result.flags == ()
    assert result.integrated_lufs == pytest.approx(lufs, abs=0.01)


@pytest.mark.parametrize(
    ("shape_name", "audio", "rate"),
    [
        ("mono_1d_44k", signals.noise(2.0, sample_rate=44_100, channels=1)[0], 44_100),
        ("mono_2d_48k", signals.noise(2.0, sample_rate=48_000, channels=1), 48_000),
        ("stereo_32k", signals.noise(2.0), 32_000),
        ("surround_6ch_16k", signals.noise(2.0, sample_rate=16_000, channels=6), 16_000),
    ],
)
def test_any_layout_becomes_32k_stereo_pcm16(shape_name, audio, rate, tmp_path: Path):
    result = export_wav(audio, rate, tmp_path / f"{shape_name}.wav")
    info = soundfile.info(str(result.path))
    assert (info.samplerate, info.channels, info.subtype, info.format) == (
        32_000,
        2,
        "PCM_16",
        "WAV",
    )
    assert info.frames == pytest.approx(2.0 * 32_000, abs=2)
    assert result.frames == info.frames
    assert result.size_bytes == result.path.stat().st_size


def test_mono_is_duplicated_to_both_channels():
    stereo = to_output_layout(signals.sine(1.0, channels=1)[0], 32_000)
    assert stereo.shape == (2, 32_000)
    np.testing.assert_array_equal(stereo[0], stereo[1])


def test_resampler_keeps_in_band_tones_and_removes_aliases():
    in_band = to_output_layout(signals.sine(1.0, 1_000.0, sample_rate=48_000), 48_000)
    spectrum = np.abs(np.fft.rfft(in_band[0]))
    assert np.argmax(spectrum) == pytest.approx(1_000, abs=1)  # 1 Hz bins over one second
    # 20 kHz is above the 16 kHz Nyquist limit of the output: a proper resampler removes it
    # instead of folding it back to 12 kHz.
    above_nyquist = to_output_layout(signals.sine(1.0, 20_000.0, sample_rate=48_000), 48_000)
    assert np.sqrt(np.mean(above_nyquist[:, 1000:-1000] ** 2)) < 0.01 * 0.5 / np.sqrt(2)


def test_loud_input_is_limited_not_clipped(tmp_path: Path):
    # A full-scale 200 Hz square-ish wave needs heavy limiting to reach -16 LUFS under -1 dBTP.
    tone = np.clip(signals.sine(4.0, 200.0, amplitude=3.0), -1.0, 1.0)
    normalised = LoudnessNormalizer().process(tone, 32_000)
    assert normalised.true_peak_dbtp <= -1.0
    # A clipper flattens tops into runs of identical samples; a limiter scales whole waves.
    # The input itself is clipped, so compare the flat-top count with what gain alone gives.
    peak = np.abs(normalised.audio[0]).max()
    at_peak = np.count_nonzero(np.abs(normalised.audio[0]) >= peak - 1e-4)
    source_peak_runs = np.count_nonzero(np.abs(tone[0]) >= 1.0)
    assert at_peak <= source_peak_runs


def test_limiter_preserves_a_sine_waveform():
    # A sine 10 dB too hot for the ceiling: the limiter's gain moves slowly, so the output is
    # still a clean sine (energy stays at the fundamental), which hard clipping would not give.
    limiter = export.PeakLimiter(ceiling=0.5)
    tone = signals.sine(2.0, 500.0, amplitude=1.58)
    limited = limiter.process(tone)
    assert np.abs(limited.audio).max() <= 0.5 + 1e-9
    assert limited.reduction_db == pytest.approx(10.0, abs=0.1)
    steady = limited.audio[0, 8_000:56_000]
    spectrum = np.abs(np.fft.rfft(steady * np.hanning(steady.size))) ** 2
    fundamental_bin = int(round(500 * steady.size / 32_000))
    near = spectrum[fundamental_bin - 5 : fundamental_bin + 6].sum()
    assert near / spectrum.sum() > 0.999


def test_limiter_passes_quiet_audio_untouched():
    quiet = signals.sine(1.0, amplitude=0.1)
    limited = export.PeakLimiter(ceiling=0.5).process(quiet)
    assert limited.reduction_db == 0.0
    np.testing.assert_array_equal(limited.audio, quiet)


def test_sparse_clicks_keep_peak_limits_and_are_flagged(tmp_path: Path):
    result = export_wav(signals.clicks(8.0), 32_000, tmp_path / "clicks.wav")
    lufs, sample_peak, true_peak = measure_file(result.path)
    assert sample_peak < 0.99
    assert true_peak <= -1.0
    assert FLAG_LOUDNESS_BELOW_TARGET in result.flags
    assert lufs < -16.2
    assert result.integrated_lufs == pytest.approx(lufs, abs=0.01)


def test_silence_is_written_without_gain_and_flagged(tmp_path: Path):
    result = export_wav(np.zeros((2, 64_000)), 32_000, tmp_path / "silence.wav")
    assert result.flags == (FLAG_SILENT,)
    assert result.gain_db == 0.0
    data, _ = soundfile.read(str(result.path))
    assert np.count_nonzero(data) == 0
    assert result.integrated_lufs is None  # silence has no loudness, as the analysis says


def test_clip_shorter_than_a_loudness_block_is_written_and_flagged(tmp_path: Path):
    short = signals.noise(0.2, rms=0.1)
    result = export_wav(short, 32_000, tmp_path / "short.wav")
    assert result.flags == (FLAG_TOO_SHORT,)
    assert result.integrated_lufs is None
    assert result.gain_db == 0.0
    assert result.frames == 6_400
    assert result.sample_peak < 0.99


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_audio_is_rejected(bad: float, tmp_path: Path):
    audio = signals.noise(1.0)
    audio[1, 123] = bad
    with pytest.raises(InvalidAudioError, match="NaN or infinite"):
        export_wav(audio, 32_000, tmp_path / "bad.wav")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("audio", "rate", "message"),
    [
        (np.zeros((2, 0)), 32_000, "no samples"),
        (np.zeros((2, 2, 100)), 32_000, "shape"),
        (np.array(["a", "b"]), 32_000, "numeric"),
        (np.zeros((2, 100)), 0, "sample_rate"),
    ],
)
def test_unusable_arrays_are_rejected(audio, rate, message, tmp_path: Path):
    with pytest.raises(InvalidAudioError, match=message):
        export_wav(audio, rate, tmp_path / "bad.wav")


def test_missing_directory_names_the_path(tmp_path: Path):
    target = tmp_path / "nowhere" / "out.wav"
    with pytest.raises(ExportError, match="directory missing") as caught:
        export_wav(signals.noise(1.0), 32_000, target)
    assert str(target) in str(caught.value)


def assert_no_temp_files(directory: Path) -> None:
    assert [p.name for p in directory.iterdir()] == []


def test_disk_full_leaves_no_temp_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    def full_disk(fd: int, data: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(export.os, "write", full_disk)
    with pytest.raises(ExportError, match="disk full") as caught:
        export_wav(signals.noise(1.0), 32_000, tmp_path / "out.wav")
    assert "out.wav" in str(caught.value)
    assert_no_temp_files(tmp_path)


def test_disk_full_at_fsync_leaves_no_temp_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    def failing_fsync(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(export.os, "fsync", failing_fsync)
    with pytest.raises(ExportError, match="disk full"):
        export_wav(signals.noise(1.0), 32_000, tmp_path / "out.wav")
    assert_no_temp_files(tmp_path)


def test_permission_denied_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    # Tests may run as root, for whom chmod does not deny anything: refuse the create instead.
    def denied(*args: object, **kwargs: object) -> tuple[int, str]:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", denied)
    with pytest.raises(ExportError, match="permission denied"):
        export_wav(signals.noise(1.0), 32_000, tmp_path / "out.wav")
    assert_no_temp_files(tmp_path)


def test_failed_rename_leaves_no_temp_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    def failing_replace(src: object, dst: object) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(export.os, "replace", failing_replace)
    with pytest.raises(ExportError, match="Input/output error"):
        export_wav(signals.noise(1.0), 32_000, tmp_path / "out.wav")
    assert_no_temp_files(tmp_path)


def test_existing_file_survives_a_failed_overwrite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    target = tmp_path / "out.wav"
    first = export_wav(signals.noise(1.0), 32_000, target)
    before = target.read_bytes()

    def full_disk(fd: int, data: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(export.os, "write", full_disk)
    with pytest.raises(ExportError):
        export_wav(signals.noise(1.0, seed=1), 32_000, target)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [first.path.name]


def test_sha256_matches_the_file(tmp_path: Path):
    import hashlib

    result = export_wav(signals.noise(1.0), 32_000, tmp_path / "out.wav")
    assert result.sha256 == hashlib.sha256(result.path.read_bytes()).hexdigest()


def test_settings_choose_the_target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from dgx_music.config import get_settings

    monkeypatch.setenv("DGX_MUSIC_TARGET_LUFS", "-23")
    get_settings.cache_clear()
    result = export_wav(signals.noise(4.0), 32_000, tmp_path / "out.wav")
    lufs, _, _ = measure_file(result.path)
    assert lufs == pytest.approx(-23.0, abs=0.2)


def test_quality_check_passes_an_export_and_fails_a_foreign_file(tmp_path: Path):
    good = export_wav(signals.drum_loop(4.0), 32_000, tmp_path / "good.wav")
    report = quality.check_wav(good.path, flags=good.flags)
    assert report.ok, report.problems
    assert report.duration_s == pytest.approx(4.0)

    foreign = tmp_path / "foreign.wav"
    soundfile.write(str(foreign), signals.sine(1.0, amplitude=1.0, channels=1)[0], 44_100, "FLOAT")
    problems = " | ".join(quality.check_wav(foreign).problems)
    assert "PCM_16" in problems
    assert "44100" in problems
    assert "1 channels" in problems
    assert "sample peak" in problems
    assert "loudness" in problems
