"""Fixtures shared by every test: isolated settings and directories, fixed torch threads."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# Never reach for the Hugging Face hub, whatever the caller's environment says.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import torch  # after the offline switches

from dgx_music.config import get_settings

# One thread is the fastest and the steadiest for the tiny model on a small CPU.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _isolated_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test gets its own data and output directories and freshly read settings."""
    for name in list(os.environ):
        if name.startswith("DGX_MUSIC_") and name != "DGX_MUSIC_TEST_PG_URL":
            monkeypatch.delenv(name)
    monkeypatch.setenv("DGX_MUSIC_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DGX_MUSIC_OUTPUT_DIR", str(tmp_path / "outputs"))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def temp_dir(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture
def output_dir(temp_dir: Path) -> Path:
    path = temp_dir / "outputs"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture
def data_dir(temp_dir: Path) -> Path:
    path = temp_dir / "data"
    path.mkdir(exist_ok=True)
    return path
