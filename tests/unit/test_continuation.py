"""Continuing a track: the given audio checked, kept as given, and joined without a seam."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from typer.testing import CliRunner

from dgx_music.config import Settings
from dgx_music.errors import ValidationError
from dgx_music.generation.continuation import (
    CROSSFADE_SECONDS,
    MAX_CONTINUE_SECONDS,
    audio_prompt,
    fade_samples,
    join,
    load_audio_prompt,
)
from dgx_music.generation.engine import MusicEngine
from dgx_music.generation.request import GenerationRequest
from dgx_music.generation.synth import SynthBackend
from dgx_music.jobs.pipeline import produce_track
from tests.utils.audio_helpers import read_channels_first
from tests.utils.seams import has_seam, join_steps

torch.set_num_threads(1)

RATE = 32_000


def synth_audio(seconds: float, prompt: str = "mellow groove, 96 bpm in D major", seed: int = 3):
    request = GenerationRequest(prompt=prompt, duration=seconds, model="synth", seed=seed)
    return SynthBackend().generate(request, seed=seed).audio


@pytest.fixture(scope="module")
def engine() -> MusicEngine:
    return MusicEngine(Settings(device="cpu"))


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    """10 s of the arranger, as a musician's sketch to continue."""
    return synth_audio(10.0)


def write(path: Path, audio: np.ndarray, rate: int = RATE, subtype: str = "FLOAT") -> Path:
    soundfile.write(str(path), np.atleast_2d(audio).T, rate, subtype=subtype)
    return path


# --- the join -------------------------------------------------------------------------------


def test_the_join_keeps_both_lengths_and_the_track_as_given(clip: np.ndarray):
    new = synth_audio(2.0, "dark techno, 128 bpm in F minor", seed=9)
    joined = join(clip, new)
    fade = fade_samples()
    assert fade <= 0.05 * RATE
    assert joined.shape == (2, clip.shape[-1] + new.shape[-1] - fade)
    np.testing.assert_array_equal(joined[:, : clip.shape[-1] - fade], clip[:, :-fade])
    np.testing.assert_array_equal(joined[:, clip.shape[-1] :], new[:, fade:])


def chord(seconds: float, hertz: tuple[float, ...], phase: float) -> np.ndarray:
    """A sustained chord, (2, samples): where a click cannot hide behind a drum's transient."""
    t = np.arange(round(seconds * RATE)) / RATE
    tone = sum(0.2 * np.sin(2 * np.pi * f * t + phase * (i + 1)) for i, f in enumerate(hertz))
    return np.repeat(np.asarray(tone)[None, :], 2, axis=0)


A_MINOR = (220.0, 261.63, 329.63)


@pytest.mark.parametrize("phase", [1.3, 2.2, 3.1])
def test_the_seam_detector_finds_a_hard_splice_and_passes_the_crossfade(phase: float):
    # The music goes on (the same chord) but out of phase with where the track stopped, as a
    # model's continuation would: only the join can make a step larger than the music's own.
    # (A splice that happens to land in phase has no click at all; these phases do not.)
    track, new = chord(10.0, A_MINOR, 0.0), chord(3.0, A_MINOR, phase)
    spliced = np.concatenate([track, new], axis=1)
    at_join, before = join_steps(spliced, track.shape[-1])
    assert has_seam(spliced, track.shape[-1]), f"hard splice: {at_join:.4f} vs {before:.4f}"
    crossfaded = join(track, new)
    at_join, before = join_steps(crossfaded, track.shape[-1] - fade_samples())
    assert not has_seam(crossfaded, track.shape[-1] - fade_samples()), (at_join, before)


# --- what may be continued ------------------------------------------------------------------


def test_any_rate_and_mono_are_laid_out_as_32_khz_stereo(tmp_path: Path):
    tone = 0.3 * np.sin(2 * np.pi * 220 * np.arange(44_100 * 2) / 44_100)
    prompt = load_audio_prompt(write(tmp_path / "mono.wav", tone, 44_100, "PCM_16"))
    assert prompt.audio.shape == (2, 2 * RATE)
    assert prompt.seconds == pytest.approx(2.0)
    assert prompt.source == {"file": str((tmp_path / "mono.wav").resolve())}
    assert prompt.conditioning(1).shape == (1, 2 * RATE)


@pytest.mark.parametrize(
    ("samples", "message"),
    [
        (np.zeros((2, 0), dtype=np.float32), "empty"),
        (np.full((2, RATE), np.nan, dtype=np.float32), "NaN"),
        (np.zeros((2, RATE), dtype=np.float32), "silent"),
        (np.full((1, 8_000 * 301), 0.1, dtype=np.float32), "the limit is 300 s"),
    ],
    ids=["empty", "nan", "silence", "too-long"],
)
def test_unusable_audio_is_refused_naming_the_field(samples: np.ndarray, message: str):
    rate = 8_000 if samples.shape[-1] > RATE else RATE
    with pytest.raises(ValidationError, match=message) as raised:
        audio_prompt(samples, rate, {"file": "x"}, field="continue")
    assert raised.value.field == "continue"


def test_a_file_that_is_not_audio_is_refused(tmp_path: Path):
    path = tmp_path / "notes.wav"
    path.write_text("not a sound file")
    with pytest.raises(ValidationError, match="cannot read"):
        load_audio_prompt(path)
    with pytest.raises(ValidationError, match="cannot read"):
        load_audio_prompt(tmp_path / "missing.wav")


def test_a_long_file_is_refused_before_it_is_read(tmp_path: Path):
    path = write(tmp_path / "long.wav", np.full(8_000 * 301, 0.1), 8_000, "PCM_16")
    with pytest.raises(ValidationError, match=f"the limit is {MAX_CONTINUE_SECONDS:g} s"):
        load_audio_prompt(path)


# --- a whole continuation -------------------------------------------------------------------


def correlation_after_gain(output: np.ndarray, given: np.ndarray) -> float:
    x, y = given.ravel().astype(np.float64), output.ravel().astype(np.float64)
    return float(np.dot(x, y) / (np.linalg.norm(x) * np.linalg.norm(y)))


@pytest.mark.parametrize("model", ["tiny", "synth"])
def test_a_continuation_of_a_10_s_clip_starts_with_that_clip(
    engine: MusicEngine, clip: np.ndarray, tmp_path: Path, model: str
):
    prompt = load_audio_prompt(write(tmp_path / "sketch.wav", clip))
    request = GenerationRequest(prompt="keep going", duration=4.0, model=model, seed=11)
    track = produce_track(request, tmp_path / "out.wav", engine=engine, continuation=prompt)
    audio, rate = read_channels_first(tmp_path / "out.wav")
    assert rate == RATE
    assert audio.shape[-1] == clip.shape[-1] + 4 * RATE
    kept = round(9.9 * RATE)
    assert correlation_after_gain(audio[:, :kept], clip[:, :kept]) > 0.99
    assert track.generation.continued_from is not None
    assert track.generation.continued_from["conditioning_seconds"] == pytest.approx(10.0)
    assert track.generation.continued_from["crossfade_seconds"] == CROSSFADE_SECONDS
    assert track.metadata.duration_s == pytest.approx(14.0, abs=1 / RATE)


def test_a_continuation_never_holds_the_codecs_resynthesis(
    engine: MusicEngine, clip: np.ndarray, monkeypatch: pytest.MonkeyPatch
):
    """The new part is decoded from the frames after the prompt only: ``codec.decode`` is asked
    for audio from the prompt's end, the prompt serving as context."""
    from dgx_music.generation import codec

    starts: list[tuple[int, int]] = []
    original = codec.decode

    def spying(model, codes, *, start=0, **kwargs):
        starts.append((start, int(codes.shape[-1])))
        return original(model, codes, start=start, **kwargs)

    monkeypatch.setattr(codec, "decode", spying)
    prompt = audio_prompt(clip, RATE, {"file": "sketch"})
    request = GenerationRequest(prompt="more", duration=1.0, model="tiny", seed=1)
    result = engine.generate(request, continuation=prompt)
    ((start, frames),) = starts
    assert start == 500  # 10 s of prompt at 50 Hz
    assert frames - start == 51  # (1 s + 20 ms) * 50
    assert result.audio.shape == (2, clip.shape[-1] + RATE)


# --- the command line -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [("text", "cannot read"), ("silence", "silent"), ("nan", "NaN")],
)
def test_the_cli_refuses_a_bad_file_with_exit_2_and_stores_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str, message: str
):
    from dgx_music.cli import app
    from dgx_music.config import get_settings

    monkeypatch.setenv("DGX_MUSIC_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DGX_MUSIC_OUTPUT_DIR", str(tmp_path / "outputs"))
    get_settings.cache_clear()
    path = tmp_path / "in.wav"
    if content == "text":
        path.write_text("hello")
    else:
        fill = 0.0 if content == "silence" else np.nan
        write(path, np.full((2, RATE), fill, dtype=np.float32))
    result = CliRunner().invoke(
        app, ["generate", "more", "--model", "synth", "--continue", str(path)]
    )
    assert result.exit_code == 2, result.output
    assert "continue" in result.output and message in result.output
    assert not (tmp_path / "outputs").exists() or not any((tmp_path / "outputs").rglob("*.wav"))
    get_settings.cache_clear()
