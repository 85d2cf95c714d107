"""Where a MusicGen checkpoint's files are on this machine: ``DGX_MUSIC_MODEL_DIR`` or the Hugging
Face cache. Nothing here touches the network; :func:`download_hint` says how to fetch what is
missing.
"""

from __future__ import annotations

from pathlib import Path

#: Weight files that mark a cached checkpoint as complete.
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


def local_checkpoint_dir(repo_id: str, model_dir: Path | None) -> Path | None:
    """The copy of ``repo_id`` under ``model_dir``, if there is one.

    Parameters
    ----------
    repo_id
        Hugging Face repository id, e.g. ``"facebook/musicgen-small"``.
    model_dir
        ``DGX_MUSIC_MODEL_DIR``; searched as ``<model_dir>/<repo name>`` (``musicgen-small``)
        then ``<model_dir>/<repo id>`` (``facebook/musicgen-small``).

    Returns
    -------
    Path or None
        A directory holding ``config.json``, or ``None``.
    """
    if model_dir is None:
        return None
    for candidate in (model_dir / repo_id.split("/")[-1], model_dir / repo_id):
        if (candidate / "config.json").is_file():
            return candidate
    return None


def cached_checkpoint_dir(repo_id: str, cache_dir: Path | None = None) -> Path | None:
    """The snapshot of ``repo_id`` in the Hugging Face cache, if it has a config and weights.

    Reads only the local cache (``HF_HUB_CACHE``, or ``cache_dir``); never the network.
    """
    from huggingface_hub import try_to_load_from_cache

    config = try_to_load_from_cache(repo_id, "config.json", cache_dir=cache_dir)
    if not isinstance(config, str):
        return None
    snapshot = Path(config).parent
    if any((snapshot / name).is_file() for name in WEIGHT_FILES):
        return snapshot
    return None


def download_hint(repo_id: str) -> str:
    """What to run to fetch ``repo_id`` once, for error messages."""
    name = repo_id.split("/")[-1]
    return (
        f"fetch it once with `hf download {repo_id}` (older huggingface_hub: "
        f"`huggingface-cli download {repo_id}`) and run again, or copy the checkpoint to "
        f"$DGX_MUSIC_MODEL_DIR/{name}"
    )
