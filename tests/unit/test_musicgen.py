"""MusicgenBackend with the real tiny checkpoint: lengths, seeds, progress, threads, failures."""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import math
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import huggingface_hub.constants
import numpy as np
import pytest
import torch

from dgx_music.errors import GenerationError, GpuOutOfMemoryError, ModelLoadError
from dgx_music.generation.checkpoints import cached_checkpoint_dir
from dgx_music.generation.engine import TINY_MODEL_DIR
from dgx_music.generation.musicgen import MusicgenBackend
from dgx_music.generation.request import GenerationRequest

torch.set_num_threads(1)

#: Largest size the packaged tiny checkpoint may have, bytes.
TINY_MAX_BYTES = 5 * 1024 * 1024
#: Sample rate of the tiny checkpoint, Hz.
TINY_SAMPLE_RATE = 32_000
#: What torch says when CUDA runs out of memory (shortened).
OOM_MESSAGE = (
    "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 7.79 GiB "
    "of which 1.02 GiB is free."
)
SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "build_tiny_musicgen.py"


def request(duration: float = 1.0, **fields: Any) -> GenerationRequest:
    return GenerationRequest(prompt="lofi hip hop piano, 90 bpm", duration=duration, **fields)


@pytest.fixture(scope="module")
def tiny() -> MusicgenBackend:
    """One loaded tiny backend shared by the read-only tests of this module."""
    backend = MusicgenBackend(TINY_MODEL_DIR, name="tiny", device="cpu")
    backend.load()
    return backend


@pytest.fixture
def fresh_tiny() -> MusicgenBackend:
    """A tiny backend of its own, for tests that patch or move the model."""
    backend = MusicgenBackend(TINY_MODEL_DIR, name="tiny", device="cpu")
    backend.load()
    return backend


@pytest.fixture
def empty_hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the Hugging Face cache at an empty directory (transformers reads it per call)."""
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    return cache


def fail_first_call(
    backend: MusicgenBackend, exc: BaseException, monkeypatch: pytest.MonkeyPatch
) -> list[int]:
    """Make the model's ``generate`` raise ``exc`` once, then behave; returns the call log."""
    assert backend._model is not None
    original: Callable[..., Any] = backend._model.generate
    calls: list[int] = []

    def generate(*args: Any, **kwargs: Any) -> Any:
        calls.append(len(calls))
        if len(calls) == 1:
            raise exc
        return original(*args, **kwargs)

    monkeypatch.setattr(backend._model, "generate", generate)
    return calls


# -- the asset -------------------------------------------------------------------------------


def test_tiny_asset_is_a_complete_small_checkpoint():
    names = {path.name for path in TINY_MODEL_DIR.iterdir()}
    assert {"config.json", "generation_config.json", "model.safetensors"} <= names
    assert "tokenizer.json" in names
    total = sum(path.stat().st_size for path in TINY_MODEL_DIR.iterdir())
    assert total < TINY_MAX_BYTES


def test_tiny_has_the_real_32khz_layout(tiny: MusicgenBackend):
    assert tiny.sample_rate == TINY_SAMPLE_RATE
    assert tiny.frame_rate == 50
    assert tiny._model is not None
    assert tiny._model.decoder.num_codebooks == 4
    assert tiny._model.dtype == torch.float32
    assert tiny.steps_for(1.0) == 53
    assert tiny.steps_for(0.01) == 4


@pytest.mark.slow
def test_build_script_gives_identical_files_twice(tmp_path: Path):
    spec = importlib.util.spec_from_file_location("build_tiny_musicgen", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    first = module.build(tmp_path / "a")
    second = module.build(tmp_path / "b")
    assert first == second
    packaged = hashlib.sha256((TINY_MODEL_DIR / "model.safetensors").read_bytes()).hexdigest()
    assert first["model.safetensors"] == packaged, (
        "the packaged tiny weights differ from what the script builds now (a torch or "
        "transformers upgrade?); run scripts/build_tiny_musicgen.py and commit the asset"
    )


# -- generation ------------------------------------------------------------------------------


@pytest.mark.parametrize("duration", [0.5, 1.0, 2.0, 0.33])
def test_generates_exactly_the_requested_length(tiny: MusicgenBackend, duration: float):
    result = tiny.generate(request(duration), seed=1)
    assert result.audio.shape == (1, round(duration * TINY_SAMPLE_RATE))
    assert result.audio.dtype == np.float32
    assert np.isfinite(result.audio).all()
    assert np.abs(result.audio).max() > 0
    assert result.sample_rate == TINY_SAMPLE_RATE
    assert result.duration == pytest.approx(duration, abs=1 / TINY_SAMPLE_RATE)
    assert (result.model, result.device, result.seed) == ("tiny", "cpu", 1)
    assert result.generation_seconds > 0


def test_same_seed_same_audio_different_seed_different_audio(tiny: MusicgenBackend):
    first = tiny.generate(request(), seed=1234).audio
    again = tiny.generate(request(), seed=1234).audio
    other = tiny.generate(request(), seed=1235).audio
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


@pytest.mark.parametrize(
    "fields",
    [
        {"top_k": 0, "top_p": 0.9},
        {"top_p": 0.0, "temperature": 0.5},
        {"guidance_scale": 1.0},
        {"top_k": 1, "guidance_scale": 5.0, "temperature": 2.0},
    ],
)
def test_sampling_parameters_are_accepted(tiny: MusicgenBackend, fields: dict[str, Any]):
    result = tiny.generate(request(0.2, **fields), seed=3)
    assert result.audio.shape == (1, round(0.2 * TINY_SAMPLE_RATE))


def test_unusual_prompts_generate(tiny: MusicgenBackend):
    for prompt in ("日本語 🎸🥁 <tags> & ; DROP TABLE", "x", "y" * 1000):
        result = tiny.generate(GenerationRequest(prompt=prompt, duration=0.1), seed=5)
        assert result.audio.shape == (1, 3200)


def test_progress_moves_forward_and_reaches_the_total(tiny: MusicgenBackend):
    reports: list[tuple[int, int]] = []
    tiny.generate(request(1.0), seed=2, progress=lambda done, total: reports.append((done, total)))
    total = math.ceil(1.0 * 50) + 3
    assert reports[0] == (0, total)
    assert reports[-1] == (total, total)
    assert {t for _, t in reports} == {total}
    done = [d for d, _ in reports]
    assert done == sorted(set(done))
    assert len(reports) == total + 1


def test_progress_callback_exceptions_pass_through_unchanged(tiny: MusicgenBackend):
    class Cancelled(Exception):
        pass

    def cancel_at_ten(done: int, total: int) -> None:
        if done == 10:
            raise Cancelled

    with pytest.raises(Cancelled):
        tiny.generate(request(1.0), seed=2, progress=cancel_at_ten)
    # The backend is still usable afterwards.
    assert tiny.generate(request(0.1), seed=2).audio.shape == (1, 3200)


def test_concurrent_generations_match_sequential_ones(tiny: MusicgenBackend):
    expected = {seed: tiny.generate(request(0.5), seed=seed).audio for seed in (11, 12)}
    results: dict[int, np.ndarray] = {}
    errors: list[BaseException] = []

    def run(seed: int) -> None:
        try:
            results[seed] = tiny.generate(request(0.5), seed=seed).audio
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(seed,)) for seed in (11, 12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    for seed, audio in expected.items():
        np.testing.assert_array_equal(results[seed], audio)


def test_concurrent_first_use_loads_once(monkeypatch: pytest.MonkeyPatch):
    backend = MusicgenBackend(TINY_MODEL_DIR, name="tiny", device="cpu")
    from transformers import MusicgenForConditionalGeneration

    loads: list[str] = []
    original = MusicgenForConditionalGeneration.from_pretrained

    def counting(*args: Any, **kwargs: Any) -> Any:
        loads.append(str(args[0]))
        return original(*args, **kwargs)

    monkeypatch.setattr(MusicgenForConditionalGeneration, "from_pretrained", counting)
    results: list[np.ndarray] = []
    threads = [
        threading.Thread(
            target=lambda: results.append(backend.generate(request(0.2), seed=1).audio)
        )
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(loads) == 1
    assert len(results) == 2
    np.testing.assert_array_equal(results[0], results[1])


# -- loading ---------------------------------------------------------------------------------


def test_missing_weights_raise_model_load_error_with_the_download_command(
    tmp_path: Path, empty_hf_cache: Path
):
    backend = MusicgenBackend(
        "facebook/musicgen-small", device="cpu", model_dir=tmp_path / "models"
    )
    with pytest.raises(ModelLoadError) as info:
        backend.generate(request(), seed=1)
    message = str(info.value)
    assert "facebook/musicgen-small" in message
    assert "hf download facebook/musicgen-small" in message
    assert "huggingface-cli download facebook/musicgen-small" in message
    assert "DGX_MUSIC_MODEL_DIR" in message
    assert info.value.__cause__ is not None
    assert not backend.is_loaded


def test_local_directory_without_weights_raises_model_load_error(tmp_path: Path):
    broken = tmp_path / "broken"
    broken.mkdir()
    shutil.copy(TINY_MODEL_DIR / "config.json", broken)
    with pytest.raises(ModelLoadError, match="cannot load the MusicGen checkpoint") as info:
        MusicgenBackend(broken, device="cpu").load()
    assert str(broken) in str(info.value)
    assert info.value.__cause__ is not None


def test_repo_id_loads_from_model_dir(tmp_path: Path, empty_hf_cache: Path):
    shutil.copytree(TINY_MODEL_DIR, tmp_path / "models" / "musicgen-small")
    backend = MusicgenBackend(
        "facebook/musicgen-small",
        name="facebook/musicgen-small",
        device="cpu",
        model_dir=tmp_path / "models",
    )
    result = backend.generate(request(0.5), seed=1)
    assert result.audio.shape == (1, 16_000)
    assert result.model == "facebook/musicgen-small"


def make_hf_cache_snapshot(cache: Path, repo_id: str) -> Path:
    """Lay out ``repo_id`` in ``cache`` as ``hf download`` does, with the tiny files."""
    revision = "0" * 40
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / revision
    shutil.copytree(TINY_MODEL_DIR, snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    return snapshot


def test_repo_id_loads_from_the_hf_cache(empty_hf_cache: Path):
    snapshot = make_hf_cache_snapshot(empty_hf_cache, "facebook/musicgen-small")
    assert cached_checkpoint_dir("facebook/musicgen-small") == snapshot
    backend = MusicgenBackend("facebook/musicgen-small", device="cpu")
    assert backend.generate(request(0.5), seed=1).audio.shape == (1, 16_000)


# -- failures during generation --------------------------------------------------------------


def test_gpu_oom_falls_back_to_the_cpu_when_allowed(
    fresh_tiny: MusicgenBackend, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    expected = fresh_tiny.generate(request(0.5), seed=9).audio
    calls = fail_first_call(fresh_tiny, torch.cuda.OutOfMemoryError(OOM_MESSAGE), monkeypatch)
    assert fresh_tiny._model is not None
    moves: list[tuple[Any, ...]] = []
    original_to = fresh_tiny._model.to

    def spy_to(*args: Any, **kwargs: Any) -> Any:
        moves.append((*args, kwargs.get("dtype")))
        return original_to(*args, **kwargs)

    monkeypatch.setattr(fresh_tiny._model, "to", spy_to)
    reports: list[int] = []
    with caplog.at_level(logging.WARNING, logger="dgx_music.generation.musicgen"):
        result = fresh_tiny.generate(
            request(0.5), seed=9, progress=lambda done, total: reports.append(done)
        )
    assert len(calls) == 2
    assert moves == [("cpu", torch.float32)]
    assert result.device == "cpu" and fresh_tiny.device == "cpu"
    np.testing.assert_array_equal(result.audio, expected)
    assert "ran out of memory" in caplog.text and "2.00 GiB" in caplog.text
    assert reports == sorted(set(reports)) and reports[-1] == 28


def test_gpu_oom_raises_with_the_amount_when_fallback_is_off(
    fresh_tiny: MusicgenBackend, monkeypatch: pytest.MonkeyPatch
):
    fresh_tiny.cpu_fallback = False
    emptied: list[bool] = []
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: emptied.append(True))
    calls = fail_first_call(fresh_tiny, torch.cuda.OutOfMemoryError(OOM_MESSAGE), monkeypatch)
    with pytest.raises(GpuOutOfMemoryError) as info:
        fresh_tiny.generate(request(1.5), seed=1)
    message = str(info.value)
    assert "2.00 GiB" in message and "1.5 s" in message and "tiny" in message
    assert "DGX_MUSIC_CPU_FALLBACK" in message
    assert isinstance(info.value.__cause__, torch.cuda.OutOfMemoryError)
    assert len(calls) == 1 and emptied


def test_gpu_oom_without_an_amount_still_explains(
    fresh_tiny: MusicgenBackend, monkeypatch: pytest.MonkeyPatch
):
    fresh_tiny.cpu_fallback = False
    fail_first_call(fresh_tiny, torch.cuda.OutOfMemoryError("out of memory"), monkeypatch)
    with pytest.raises(GpuOutOfMemoryError, match="not reported"):
        fresh_tiny.generate(request(1.0), seed=1)


def test_other_failures_become_generation_errors(
    fresh_tiny: MusicgenBackend, monkeypatch: pytest.MonkeyPatch
):
    fail_first_call(fresh_tiny, RuntimeError("shape mismatch in layer 3"), monkeypatch)
    with pytest.raises(GenerationError) as info:
        fresh_tiny.generate(request(1.0), seed=1)
    assert not isinstance(info.value, GpuOutOfMemoryError)
    assert "tiny" in str(info.value) and "shape mismatch in layer 3" in str(info.value)
    assert isinstance(info.value.__cause__, RuntimeError)
    # The next call works.
    assert fresh_tiny.generate(request(0.1), seed=1).audio.shape == (1, 3200)


def test_the_move_to_the_cpu_waits_for_running_generations_and_holds_new_ones():
    from dgx_music.generation.musicgen import _SharedUse

    use = _SharedUse()
    events: list[str] = []
    inside, release, moving = threading.Event(), threading.Event(), threading.Event()

    def generation(name: str, started: threading.Event | None = None) -> None:
        with use.shared():
            if started is not None:
                started.set()
            release.wait(5)
            events.append(name)

    def move() -> None:
        with use.exclusive():
            moving.set()
            events.append("moved")

    running = threading.Thread(target=generation, args=("running", inside))
    running.start()
    assert inside.wait(5)
    mover = threading.Thread(target=move)
    mover.start()
    assert not moving.wait(0.2), "the model moved while a generation was using it"
    late = threading.Thread(target=generation, args=("late",))
    late.start()
    release.set()
    for thread in (running, mover, late):
        thread.join(5)
    assert events == ["running", "moved", "late"]
