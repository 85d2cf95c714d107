"""The fault-injecting engine and its five helpers do what the fault tests rely on."""

from __future__ import annotations

import logging
import time

import numpy as np
import pytest
import torch

from dgx_music.generation import engine as engine_module
from dgx_music.generation.engine import choose_device
from dgx_music.generation.request import GenerationRequest, GenerationResult
from tests.utils.mock_helpers import (
    DEFAULT_GENERATION_DELAY_S,
    OOM_MESSAGE,
    MockMusicGenerationEngine,
    create_mock_generation_result,
    create_test_audio_array,
    cuda_out_of_memory,
    inject_generate_faults,
    simulate_cuda_unavailable,
)


def request(**changes) -> GenerationRequest:
    fields = {"prompt": "mock groove, 100 bpm in C major", "duration": 0.5, "model": "synth"}
    fields.update(changes)
    return GenerationRequest(**fields)


def test_the_mock_engine_waits_the_spec_delay_and_reports_progress(mock_engine):
    assert mock_engine.generation_delay == DEFAULT_GENERATION_DELAY_S == 0.1
    seen: list[tuple[int, int]] = []
    started = time.perf_counter()
    result = mock_engine.generate(
        request(), progress=lambda done, total: seen.append((done, total))
    )
    assert time.perf_counter() - started >= 0.1
    assert seen == [(step, 11) for step in range(1, 11)]  # strictly rising, never complete
    assert result.audio.shape == (2, 16_000) and mock_engine.calls == 1


def test_generate_audio_returns_array_and_rate():
    engine = MockMusicGenerationEngine(0.0)
    audio, rate = engine.generate_audio("bass line, 90 bpm in E minor", 0.5, seed=3)
    assert rate == 32_000 and audio.shape == (2, 16_000) and audio.dtype == np.float32
    assert np.abs(audio).max() > 0.01
    assert engine.requests[0].model == "synth" and engine.requests[0].seed == 3


def test_fail_times_fails_the_first_calls_then_generates():
    engine = MockMusicGenerationEngine(0.0, fail_with=cuda_out_of_memory(), fail_times=2)
    for _ in range(2):
        with pytest.raises(torch.cuda.OutOfMemoryError, match=r"3\.50 GiB"):
            engine.generate(request())
    assert isinstance(engine.generate(request()), GenerationResult)
    assert engine.calls == 3
    always = MockMusicGenerationEngine(0.0, fail_with=RuntimeError("model bug"))
    for _ in range(3):
        with pytest.raises(RuntimeError, match="model bug"):
            always.generate(request())


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"generation_delay": -1}, "generation_delay"),
        ({"steps": 0}, "steps"),
        ({"fail_times": -2}, "fail_times"),
    ],
)
def test_the_mock_engine_refuses_bad_settings(arguments: dict, field: str):
    with pytest.raises(ValueError, match=field):
        MockMusicGenerationEngine(**arguments)


def test_create_test_audio_array_and_its_limits():
    tone = create_test_audio_array(0.25, 16_000, channels=1, frequency=500, amplitude=0.8)
    assert tone.shape == (1, 4_000) and tone.dtype == np.float32
    assert np.abs(tone).max() == pytest.approx(0.8, abs=1e-3)
    for bad, field in (
        ({"duration": 0}, "duration"),
        ({"channels": 0}, "channels"),
        ({"frequency": 16_000}, "frequency"),
        ({"amplitude": 1.5}, "amplitude"),
    ):
        with pytest.raises(ValueError, match=field):
            create_test_audio_array(**bad)


def test_create_mock_generation_result_matches_the_request():
    result = create_mock_generation_result(request(duration=1.5, seed=7), device="cuda")
    assert (result.duration, result.device, result.seed, result.model) == (1.5, "cuda", 7, "synth")
    with pytest.raises(ValueError, match="audio: shape"):
        create_mock_generation_result(request(), audio=np.zeros(100))


def test_simulate_cuda_unavailable_sends_auto_to_the_cpu_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    simulate_cuda_unavailable(monkeypatch)
    assert not torch.cuda.is_available()
    with caplog.at_level(logging.WARNING, logger=engine_module.__name__):
        assert choose_device("auto") == "cpu"
        assert choose_device("auto") == "cpu"
    warnings = [r for r in caplog.records if "CUDA is not available" in r.getMessage()]
    assert len(warnings) == 1  # once per process, re-armed by the helper


def test_inject_generate_faults_counts_and_then_passes_through(monkeypatch: pytest.MonkeyPatch):
    class Model:
        def generate(self, value: int) -> int:
            return value * 2

    model = Model()
    calls = inject_generate_faults(monkeypatch, model, cuda_out_of_memory, times=1)
    with pytest.raises(torch.cuda.OutOfMemoryError, match=OOM_MESSAGE[:20]):
        model.generate(1)
    assert model.generate(4) == 8
    assert calls == [True, False]
    with pytest.raises(ValueError, match="times"):
        inject_generate_faults(monkeypatch, model, cuda_out_of_memory, times=-1)
