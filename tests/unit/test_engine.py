"""The model registry, device choice and MusicEngine (with the real tiny model, no network)."""

from __future__ import annotations

import json
import logging
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import huggingface_hub.constants
import numpy as np
import pytest
import torch

from dgx_music.config import Settings, get_settings
from dgx_music.errors import ModelLoadError, UnknownModelError, ValidationError
from dgx_music.generation import engine
from dgx_music.generation.engine import (
    HF_CHECKPOINTS,
    TINY_MODEL_DIR,
    ModelSpec,
    MusicEngine,
    apply_torch_threads,
    choose_device,
    get_engine,
    model_choices,
    resolve_model,
)
from dgx_music.generation.musicgen import MusicgenBackend
from dgx_music.generation.request import (
    MAX_SEED,
    Backend,
    GenerationRequest,
    GenerationResult,
    ProgressCallback,
)

torch.set_num_threads(1)


class RecordingBackend(Backend):
    """A stand-in backend: silence of the right length, and a log of what it was asked."""

    name = "recording"

    def __init__(self) -> None:
        self.calls: list[tuple[GenerationRequest, int]] = []

    def generate(
        self,
        request: GenerationRequest,
        *,
        seed: int,
        progress: ProgressCallback | None = None,
        continuation: object = None,
    ) -> GenerationResult:
        self.calls.append((request, seed))
        if progress is not None:
            progress(1, 1)
        samples = round(request.duration * self.sample_rate)
        return GenerationResult(
            audio=np.zeros((1, samples), dtype=np.float32),
            sample_rate=self.sample_rate,
            model=request.model,
            device=self.device,
            seed=seed,
            generation_seconds=0.0,
        )


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Settings]:
    """CPU settings with an empty model directory, read afresh from the environment."""
    monkeypatch.setenv("DGX_MUSIC_DEVICE", "cpu")
    monkeypatch.setenv("DGX_MUSIC_MODEL_DIR", str(tmp_path / "models"))
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


@pytest.fixture
def empty_hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the Hugging Face cache at an empty directory (transformers reads it per call)."""
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    return cache


@pytest.fixture
def no_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture
def with_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pretend two CUDA devices are present."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)


def musicgen_dir(path: Path, model_type: str = "musicgen") -> Path:
    """A directory that looks like a checkpoint of ``model_type`` (config only)."""
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"model_type": model_type}))
    return path


# -- registry --------------------------------------------------------------------------------


def test_model_choices_name_every_builtin_and_checkpoint():
    choices = model_choices()
    assert choices[:2] == ["tiny", "synth"]
    assert set(HF_CHECKPOINTS) <= set(choices)
    assert "facebook/musicgen-stereo-large" in choices
    assert {f"twin:{name}" for name in HF_CHECKPOINTS} <= set(choices)
    assert len(choices) == len(set(choices)) == 14


@pytest.mark.parametrize("name", HF_CHECKPOINTS)
def test_each_checkpoint_has_a_twin_that_needs_no_download(name: str, empty_hf_cache: Path):
    twin = f"twin:{name}"
    assert resolve_model(twin) == ModelSpec(twin, "musicgen", twin)
    models = {info.name: info for info in MusicEngine().available_models()}
    assert models[twin].available_offline and "random weights" in models[twin].source


@pytest.mark.parametrize("name", HF_CHECKPOINTS)
def test_checkpoints_resolve_to_their_repo_id(name: str):
    spec = resolve_model(name)
    assert (spec.name, spec.kind, spec.source) == (name, "musicgen", name)


def test_builtins_resolve():
    assert resolve_model("synth").kind == "synth"
    tiny = resolve_model("tiny")
    assert (tiny.name, tiny.kind, Path(tiny.source)) == ("tiny", "musicgen", TINY_MODEL_DIR)
    assert (TINY_MODEL_DIR / "config.json").is_file()
    assert resolve_model(str(TINY_MODEL_DIR)) == tiny


def test_local_musicgen_directory_is_accepted(tmp_path: Path):
    checkpoint = musicgen_dir(tmp_path / "my-finetune")
    spec = resolve_model(str(checkpoint))
    assert spec.kind == "musicgen"
    assert Path(spec.source) == checkpoint.resolve()
    assert spec.name == str(checkpoint.resolve())


@pytest.mark.parametrize(
    "name",
    ["musicgen-small", "facebook/musicgen-melody", "Tiny", "", "../nowhere", "gpt2"],
)
def test_unknown_models_list_the_choices(name: str):
    with pytest.raises(UnknownModelError) as info:
        resolve_model(name)
    assert isinstance(info.value, ValidationError)
    assert info.value.field == "model"
    assert info.value.choices == model_choices()
    for choice in model_choices():
        assert choice in str(info.value)


def test_directory_of_another_model_type_is_rejected(tmp_path: Path):
    with pytest.raises(UnknownModelError):
        resolve_model(str(musicgen_dir(tmp_path / "bert", model_type="bert")))
    (tmp_path / "garbage").mkdir()
    (tmp_path / "garbage" / "config.json").write_text("{not json")
    with pytest.raises(UnknownModelError):
        resolve_model(str(tmp_path / "garbage"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UnknownModelError):
        resolve_model(str(tmp_path / "empty"))


# -- devices and threads ---------------------------------------------------------------------


def test_cpu_is_always_cpu(with_cuda: None):
    assert choose_device("cpu") == "cpu"


def test_cuda_when_requested_and_present(with_cuda: None):
    assert choose_device("cuda") == "cuda"
    assert choose_device("cuda:1") == "cuda:1"
    assert choose_device("auto") == "cuda"


@pytest.mark.parametrize("device", ["cuda:2", "cuda:x", "cuda:"])
def test_cuda_device_index_must_exist(with_cuda: None, device: str):
    with pytest.raises(ModelLoadError, match="does not exist"):
        choose_device(device)


def test_cuda_requested_but_missing_is_a_clear_error(no_cuda: None):
    with pytest.raises(ModelLoadError, match="CUDA is not available") as info:
        choose_device("cuda")
    assert "DGX_MUSIC_DEVICE" in str(info.value)


def test_auto_without_cuda_uses_the_cpu_and_warns_once(
    no_cuda: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    monkeypatch.setattr(engine, "_cpu_warning_given", False)
    with caplog.at_level(logging.WARNING, logger="dgx_music.generation.engine"):
        assert choose_device("auto") == "cpu"
        assert choose_device("auto") == "cpu"
    warnings = [r for r in caplog.records if "CUDA is not available" in r.getMessage()]
    assert len(warnings) == 1
    assert warnings[0].levelno == logging.WARNING


def test_unknown_device_is_rejected():
    with pytest.raises(ModelLoadError, match="unknown device"):
        choose_device("tpu")


@pytest.mark.parametrize(("threads", "expected"), [(0, []), (1, [1])])
def test_apply_torch_threads(monkeypatch: pytest.MonkeyPatch, threads: int, expected: list[int]):
    calls: list[int] = []
    monkeypatch.setattr(torch, "get_num_threads", lambda: 4)
    monkeypatch.setattr(torch, "set_num_threads", calls.append)
    apply_torch_threads(Settings(torch_threads=threads))
    assert calls == expected


# -- the engine ------------------------------------------------------------------------------


def test_backends_are_built_once_per_resolved_model(settings: Settings):
    music = MusicEngine(settings)
    tiny = music.backend("tiny")
    assert isinstance(tiny, MusicgenBackend)
    assert music.backend("tiny") is tiny
    assert music.backend(str(TINY_MODEL_DIR)) is tiny
    assert tiny.device == "cpu"
    assert not tiny.is_loaded  # weights load on first generation
    assert music.backend("facebook/musicgen-small") is not tiny


def test_concurrent_backend_lookups_share_one_backend(settings: Settings):
    music = MusicEngine(settings)
    found: list[Backend] = []
    threads = [
        threading.Thread(target=lambda: found.append(music.backend("tiny"))) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(found) == 8
    assert all(backend is found[0] for backend in found)


def test_synth_is_built_lazily():
    pytest.importorskip("dgx_music.generation.synth")
    music = MusicEngine(Settings(device="cpu"))
    backend = music.backend("synth")
    assert backend.name == "synth"
    assert music.backend("synth") is backend


def test_cuda_setting_without_cuda_fails_for_musicgen_only(no_cuda: None):
    music = MusicEngine(Settings(device="cuda"))
    with pytest.raises(ModelLoadError, match="CUDA"):
        music.backend("tiny")


def test_engine_generates_with_tiny(settings: Settings):
    music = MusicEngine(settings)
    reports: list[tuple[int, int]] = []
    result = music.generate(
        GenerationRequest(prompt="ambient pad", duration=1.0, model="tiny", seed=42),
        progress=lambda done, total: reports.append((done, total)),
    )
    assert result.audio.shape == (1, 32_000)
    assert (result.model, result.seed, result.device) == ("tiny", 42, "cpu")
    assert reports[-1] == (53, 53)


def test_engine_chooses_and_reports_a_seed(settings: Settings, monkeypatch: pytest.MonkeyPatch):
    stand_in = RecordingBackend()
    monkeypatch.setattr(MusicEngine, "_build", lambda self, spec: stand_in)
    music = MusicEngine(settings)
    seeds = {
        music.generate(GenerationRequest(prompt="x", duration=0.1, model="tiny")).seed
        for _ in range(5)
    }
    assert len(seeds) > 1
    assert all(0 <= seed <= MAX_SEED for seed in seeds)
    fixed = music.generate(GenerationRequest(prompt="x", duration=0.1, model="tiny", seed=7))
    assert fixed.seed == 7
    assert [seed for _, seed in stand_in.calls][-1] == 7


def test_engine_uses_the_default_model(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("DGX_MUSIC_DEFAULT_MODEL", "tiny")
    monkeypatch.setenv("DGX_MUSIC_DEVICE", "cpu")
    get_settings.cache_clear()
    result = MusicEngine().generate(GenerationRequest(prompt="x", duration=0.2, seed=1))
    assert result.model == "tiny"


def test_engine_loads_a_repo_id_from_model_dir(settings: Settings, empty_hf_cache: Path):
    assert settings.model_dir is not None
    shutil.copytree(TINY_MODEL_DIR, settings.model_dir / "musicgen-small")
    music = MusicEngine(settings)
    result = music.generate(
        GenerationRequest(prompt="x", duration=0.5, model="facebook/musicgen-small", seed=1)
    )
    assert result.audio.shape == (1, 16_000)
    assert result.model == "facebook/musicgen-small"


def test_missing_weights_are_a_model_load_error(settings: Settings, empty_hf_cache: Path):
    music = MusicEngine(settings)
    with pytest.raises(ModelLoadError) as info:
        music.generate(
            GenerationRequest(prompt="x", duration=1.0, model="facebook/musicgen-small", seed=1)
        )
    assert "facebook/musicgen-small" in str(info.value)
    assert "hf download facebook/musicgen-small" in str(info.value)
    assert str(settings.model_dir) in str(info.value)


def test_available_models_reports_what_runs_offline(settings: Settings, empty_hf_cache: Path):
    models = {info.name: info for info in MusicEngine(settings).available_models()}
    assert list(models) == model_choices()
    assert models["tiny"].available_offline and models["tiny"].kind == "musicgen"
    assert Path(models["tiny"].source) == TINY_MODEL_DIR
    assert models["synth"].available_offline and models["synth"].kind == "synth"
    for repo_id in HF_CHECKPOINTS:
        assert not models[repo_id].available_offline
        assert models[repo_id].source == repo_id
        assert models[f"twin:{repo_id}"].available_offline


def test_available_models_finds_model_dir_and_hf_cache_copies(
    settings: Settings, empty_hf_cache: Path
):
    assert settings.model_dir is not None
    shutil.copytree(TINY_MODEL_DIR, settings.model_dir / "musicgen-medium")
    snapshot = empty_hf_cache / "models--facebook--musicgen-large" / "snapshots" / ("a" * 40)
    shutil.copytree(TINY_MODEL_DIR, snapshot)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("a" * 40)
    # A cached config without weights is an interrupted download, not an available model.
    partial = empty_hf_cache / "models--facebook--musicgen-small" / "snapshots" / ("b" * 40)
    partial.mkdir(parents=True)
    shutil.copy(TINY_MODEL_DIR / "config.json", partial)
    (partial.parents[1] / "refs").mkdir()
    (partial.parents[1] / "refs" / "main").write_text("b" * 40)

    models: dict[str, Any] = {i.name: i for i in MusicEngine(settings).available_models()}
    assert models["facebook/musicgen-medium"].available_offline
    assert Path(models["facebook/musicgen-medium"].source) == settings.model_dir / "musicgen-medium"
    assert models["facebook/musicgen-large"].available_offline
    assert Path(models["facebook/musicgen-large"].source) == snapshot
    assert not models["facebook/musicgen-small"].available_offline


def test_get_engine_is_process_wide(settings: Settings):
    get_engine.cache_clear()
    try:
        assert get_engine() is get_engine()
        assert get_engine().settings.device == "cpu"
    finally:
        get_engine.cache_clear()
