"""Tracks past MusicGen's 30 s window: generated in windows, reproducible, decoded in chunks.

The tiny checkpoint runs the real transformers loop; each window is one ``generate`` call,
counted and measured here by wrapping the model's ``generate``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from dgx_music.config import Settings
from dgx_music.generation.engine import MusicEngine
from dgx_music.generation.musicgen import MusicgenBackend
from dgx_music.generation.request import BatchItem, GenerationRequest, GenerationResult
from dgx_music.generation.windows import MAX_WINDOW_FRAMES, Window, duration_band, plan_windows
from dgx_music.jobs.pipeline import produce_track
from tests.utils.audio_helpers import measure_loudness, measure_true_peak, read_channels_first
from tests.utils.windows import SHORT_CONTEXT_SECONDS, SHORT_WINDOW_FRAMES, use_short_windows

torch.set_num_threads(1)

# One worker runs the whole module, so the tiny model and the solo runs below are built once.
pytestmark = pytest.mark.xdist_group("longform")

RATE = 32_000
FRAME = RATE // 50  # samples per codec frame
DELAY = 3  # codebook delay of the mono checkpoints, steps


@pytest.fixture(scope="module")
def engine() -> MusicEngine:
    return MusicEngine(Settings(device="cpu", context_seconds=12.0))


@pytest.fixture(scope="module")
def tiny(engine: MusicEngine) -> MusicgenBackend:
    backend = engine.backend("tiny")
    assert isinstance(backend, MusicgenBackend)
    backend.load()
    return backend


#: Solo generations of the tiny model, by (window frames, prompt, duration, seed): several tests
#: compare against the same ones, and a 30 s window costs seconds on one core.
_SOLO: dict[tuple[int, str, float, int], GenerationResult] = {}


def solo(
    tiny: MusicgenBackend, req: GenerationRequest, seed: int, window: int = MAX_WINDOW_FRAMES
) -> GenerationResult:
    """``tiny.generate(req, seed)`` with windows of ``window`` frames, computed once per module
    (generation is deterministic)."""
    key = (window, req.prompt, req.duration, seed)
    if key not in _SOLO:
        _SOLO[key] = tiny.generate(req, seed=seed)
    return _SOLO[key]


@pytest.fixture
def short_windows(tiny: MusicgenBackend, monkeypatch: pytest.MonkeyPatch) -> MusicgenBackend:
    """``tiny`` planning windows of a fifth of the real length (see tests.utils.windows)."""
    use_short_windows(monkeypatch)
    monkeypatch.setattr(tiny, "context_seconds", SHORT_CONTEXT_SECONDS)
    return tiny


@pytest.fixture
def windows_seen(tiny: MusicgenBackend, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, int]]:
    """Every ``generate`` call of the tiny model: the prompt's frames and the new frames."""
    model = tiny._model
    assert model is not None
    calls: list[dict[str, int]] = []
    original = model.generate

    def counting(*args: Any, **kwargs: Any) -> Any:
        prompt = kwargs.get("decoder_input_ids")
        context = 0 if prompt is None else int(prompt.shape[-1])
        # max_new_tokens = the window's steps (new frames + delay) + the delay.
        calls.append({"context": context, "new": int(kwargs["max_new_tokens"]) - 2 * DELAY})
        return original(*args, **kwargs)

    monkeypatch.setattr(model, "generate", counting)
    return calls


def request(seconds: float, prompt: str = "slow ambient pads", seed: int = 7) -> GenerationRequest:
    return GenerationRequest(prompt=prompt, duration=seconds, model="tiny", seed=seed)


def test_the_plan_of_a_75_s_track():
    assert plan_windows(3750, context_frames=600) == [
        Window(0, 1500),
        Window(600, 900),
        Window(600, 900),
        Window(600, 450),
    ]


def test_a_continuation_is_first_prompted_with_the_given_track():
    # 25 s of prompt leave 5 s in the first window; later windows keep 12 s of context.
    assert plan_windows(1000, context_frames=600, prompt_frames=1250) == [
        Window(1250, 250),
        Window(600, 750),
    ]
    # A 3 s prompt: the first window adds 27 s; the second is prompted with the usual 12 s.
    assert plan_windows(2000, context_frames=600, prompt_frames=150) == [
        Window(150, 1350),
        Window(600, 650),
    ]


@pytest.mark.parametrize("frames", [1, 1500, 1501, 15_000])
def test_no_window_holds_more_than_30_s_of_tokens(frames: int):
    windows = plan_windows(frames, context_frames=600)
    assert sum(window.new for window in windows) == frames
    assert all(window.context + window.new <= MAX_WINDOW_FRAMES for window in windows)


def test_a_context_that_leaves_no_room_is_refused():
    with pytest.raises(ValueError, match="room"):
        plan_windows(100, context_frames=MAX_WINDOW_FRAMES)


def test_a_75_s_job_in_four_windows_writes_75_s_at_the_target_loudness(
    engine: MusicEngine, windows_seen: list[dict[str, int]], tmp_path: Path
):
    seen: list[tuple[int, int]] = []
    path = tmp_path / "long.wav"
    req = request(75.0)
    track = produce_track(
        req,
        path,
        engine=engine,
        progress=lambda done, total: seen.append((done, total)),
    )
    # The windows: 30 s alone, then 18 s each prompted with the 12 s before it, then the rest.
    assert windows_seen == [
        {"context": 0, "new": 1500},
        {"context": 600, "new": 900},
        {"context": 600, "new": 900},
        {"context": 600, "new": 450},
    ]
    assert all(call["context"] + call["new"] <= MAX_WINDOW_FRAMES for call in windows_seen)
    audio, rate = read_channels_first(path)
    assert rate == RATE and audio.shape[0] == 2
    assert abs(audio.shape[-1] - 75 * RATE) <= FRAME
    loudness = measure_loudness(path)
    assert loudness is not None and abs(loudness - (-16.0)) <= 0.5
    assert measure_true_peak(path) <= -1.0
    # Progress runs once over all windows: monotonic, one total, ending at it.
    total = sum(call["new"] + DELAY for call in windows_seen)
    done = [d for d, _ in seen]
    assert {t for _, t in seen} == {total}
    assert done == sorted(done) and done[0] == 0 and done[-1] == total
    assert track.generation.codes is not None and track.generation.codes.shape == (4, 3750)
    # The job's generation is the backend's, seeded by the request: the next test reads it as
    # the solo 75 s run and checks that a second run reproduces it.
    _SOLO.setdefault((MAX_WINDOW_FRAMES, req.prompt, req.duration, 7), track.generation)


def test_the_first_30_s_of_a_long_job_are_the_30_s_job(tiny: MusicgenBackend):
    # The long job is the 75 s job above when this module runs whole. That later windows are
    # as reproducible as the first is checked by the batch tests below: a two-window job in a
    # batch equals its solo run.
    long = solo(tiny, request(75.0), 7)
    short = tiny.generate(request(30.0), seed=7)
    assert long.codes is not None and short.codes is not None
    np.testing.assert_array_equal(long.codes[:, :1500], short.codes)


def test_long_and_short_jobs_in_one_batch_equal_their_solo_runs(
    short_windows: MusicgenBackend, windows_seen: list[dict[str, int]]
):
    # Two windows (300 + 100 new frames), one, and two (300 + 10): the shapes of 40, 3 and 31 s
    # jobs under the real 30 s windows.
    requests = [request(8.0, seed=1), request(0.6, "drums", seed=2), request(6.2, "bass", 3)]
    outcomes = short_windows.generate_batch([BatchItem(r, r.seed or 0) for r in requests])
    # All three share the first window; the two long ones share the second.
    assert [call["new"] for call in windows_seen] == [300, 100]
    assert windows_seen[1]["context"] == round(SHORT_CONTEXT_SECONDS * 50)
    for req, outcome in zip(requests, outcomes, strict=True):
        assert isinstance(outcome, GenerationResult), outcome
        alone = solo(short_windows, req, req.seed or 0, SHORT_WINDOW_FRAMES)
        assert outcome.codes is not None and alone.codes is not None
        np.testing.assert_array_equal(outcome.codes, alone.codes)
        np.testing.assert_array_equal(outcome.audio, alone.audio)
        assert outcome.audio.shape == (1, round(req.duration * RATE))


def test_a_job_stopped_in_its_second_window_leaves_the_others(short_windows: MusicgenBackend):
    def cancelled(done: int, total: int) -> None:
        if done > SHORT_WINDOW_FRAMES + DELAY + 20:  # inside the second window
            raise RuntimeError("cancelled in window 2")

    requests = [request(8.0, "drums", seed=2), request(8.0, seed=1)]
    outcomes = short_windows.generate_batch(
        [BatchItem(requests[0], 2, cancelled), BatchItem(requests[1], 1)]
    )
    assert isinstance(outcomes[0], RuntimeError)
    assert isinstance(outcomes[1], GenerationResult)
    alone = solo(short_windows, requests[1], 1, SHORT_WINDOW_FRAMES)  # the batch test's first job
    np.testing.assert_array_equal(outcomes[1].audio, alone.audio)


@pytest.mark.parametrize("seconds", [0.5, 30.0, 30.02, 47.9, 48.0, 48.1, 75.0, 299.9, 300.0])
def test_a_duration_band_holds_the_jobs_of_as_many_windows(seconds: float):
    low, high = duration_band(seconds, 12.0)
    assert low < seconds <= high

    def windows(duration: float) -> int:
        return len(plan_windows(math.ceil(duration * 50), context_frames=600))

    assert windows(low + 0.02) == windows(high) == windows(seconds)
    if low > 0:
        assert windows(low) == windows(seconds) - 1
