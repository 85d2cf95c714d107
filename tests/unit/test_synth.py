"""Tests of the procedural ``synth`` backend."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dgx_music.audio.notes import KEY_NAMES
from dgx_music.generation import synth
from dgx_music.generation.request import (
    Backend,
    GenerationRequest,
    GenerationResult,
    ProgressCallback,
)
from dgx_music.generation.synth import SynthBackend

SR = 32_000  # Hz


def _generate(
    prompt: str, duration: float = 2.0, seed: int = 0, progress: ProgressCallback | None = None
) -> GenerationResult:
    request = GenerationRequest(prompt=prompt, duration=duration, model="synth")
    return SynthBackend().generate(request, seed=seed, progress=progress)


def test_backend_identity() -> None:
    backend = SynthBackend()
    assert isinstance(backend, Backend)
    assert backend.name == "synth"
    assert backend.sample_rate == SR
    assert backend.device == "cpu"


@pytest.mark.parametrize("duration", [0.01, 0.5, 1.0, 3.3333, 7.77, 10.0])
def test_exact_length_stereo_float32(duration: float) -> None:
    result = _generate("lofi beat", duration=duration)
    assert result.audio.dtype == np.float32
    assert result.audio.shape == (2, round(duration * SR))
    assert result.sample_rate == SR
    assert result.duration == pytest.approx(duration, abs=1 / SR)


def test_result_fields() -> None:
    result = _generate("lofi beat", seed=42)
    assert result.model == "synth"
    assert result.device == "cpu"
    assert result.seed == 42
    assert result.generation_seconds >= 0
    assert set(result.reported) == {"tempo_bpm", "key"}
    assert isinstance(result.reported["tempo_bpm"], float)
    assert result.reported["key"] in KEY_NAMES


def test_sounds_like_music() -> None:
    audio = _generate("house track", duration=4.0, seed=3).audio
    assert np.isfinite(audio).all()
    peak = float(np.max(np.abs(audio)))
    assert 0.1 < peak < 1.0
    rms = float(np.sqrt(np.mean(audio.astype(np.float64) ** 2)))
    assert rms > 0.02
    # Instruments are panned: the channels differ but stay strongly related.
    correlation = np.corrcoef(audio[0], audio[1])[0, 1]
    assert 0.5 < correlation < 0.999
    # Faded out at the end, so a cut note does not click.
    assert np.max(np.abs(audio[:, -1])) < 1e-3


def test_deterministic_per_prompt_and_seed() -> None:
    first = _generate("jazzy hip hop", seed=123)
    second = _generate("jazzy hip hop", seed=123)
    np.testing.assert_array_equal(first.audio, second.audio)
    assert first.reported == second.reported


def test_different_seeds_and_prompts_differ() -> None:
    base = _generate("jazzy hip hop in A minor at 90 bpm", seed=1).audio
    other_seed = _generate("jazzy hip hop in A minor at 90 bpm", seed=2).audio
    other_prompt = _generate("jazzy hip hop in A minor at 90 bpm!", seed=1).audio
    assert not np.array_equal(base, other_seed)
    assert not np.array_equal(base, other_prompt)


def test_unnamed_tempo_and_key_come_from_the_seed() -> None:
    reports = [_generate("ambient", duration=0.1, seed=seed).reported for seed in range(40)]
    tempos = {report["tempo_bpm"] for report in reports}
    keys = {report["key"] for report in reports}
    assert all(60 <= tempo <= 180 for tempo in tempos)
    assert keys <= set(KEY_NAMES)
    assert len(tempos) > 10 and len(keys) > 10
    assert any(key.endswith("major") for key in keys) and any(key.endswith("minor") for key in keys)


@pytest.mark.parametrize(
    ("prompt", "tempo"),
    [
        ("funk at 120 bpm", 120.0),
        ("funk at 90bpm", 90.0),
        ("FUNK 72 BPM", 72.0),
        ("funk, 100 Bpm, bright", 100.0),
        ("128-bpm techno", 128.0),
        ("slow 92.5 bpm groove", 92.5),
        ("too fast: 300 bpm", synth.MAX_TEMPO),
        ("too slow: 10 bpm", synth.MIN_TEMPO),
    ],
)
def test_tempo_from_prompt(prompt: str, tempo: float) -> None:
    assert synth.parse_tempo(prompt) == tempo
    assert _generate(prompt, duration=0.1).reported["tempo_bpm"] == tempo


@pytest.mark.parametrize(
    ("prompt", "key"),
    [
        ("piano in A minor", "A minor"),
        ("piano in a minor", "A minor"),
        ("piano in F# major", "F# major"),
        ("piano in f♯ major", "F# major"),
        ("piano in Bb minor", "A# minor"),
        ("piano in bb minor", "A# minor"),
        ("piano in b minor", "B minor"),
        ("piano in Eb major", "D# major"),
        ("piano in E♭ Major", "D# major"),
        ("piano in C sharp minor", "C# minor"),
        ("piano in D flat major", "C# major"),
        ("piano in g min", "G minor"),
        ("piano IN Db MAJ", "C# major"),
    ],
)
def test_key_from_prompt(prompt: str, key: str) -> None:
    assert _generate(prompt, duration=0.1).reported["key"] == key


@pytest.mark.parametrize("prompt", ["piano", "piano in the morning", "within E minor range"])
def test_prompts_without_a_key_or_tempo(prompt: str) -> None:
    assert synth.parse_key(prompt) is None
    assert synth.parse_tempo(prompt) is None


def test_tempo_and_key_together() -> None:
    reported = _generate("chill lofi in D minor, 85 bpm", duration=0.1).reported
    assert reported == {"tempo_bpm": 85.0, "key": "D minor"}


@pytest.mark.parametrize(("tempo", "duration"), [(120, 8.0), (60, 5.0), (200, 1.0), (100, 0.3)])
def test_progress_counts_bars_and_reaches_total(tempo: int, duration: float) -> None:
    calls: list[tuple[int, int]] = []
    _generate(
        f"beat {tempo} bpm",
        duration=duration,
        progress=lambda done, total: calls.append((done, total)),
    )
    total = max(1, math.ceil(duration / (4 * 60 / tempo)))
    assert calls == [(done, total) for done in range(1, total + 1)]


def test_loading_the_synth_does_not_load_the_analysis():
    # librosa and numba cost seconds in a fresh process; the synth only needs key names.
    import subprocess
    import sys

    code = (
        "import sys, dgx_music.generation.synth\n"
        "heavy = sorted(m for m in ('librosa', 'numba', 'torch') if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.strip() == "", f"importing the synth loaded {result.stdout.strip()}"
