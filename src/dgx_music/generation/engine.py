"""The model registry, device choice and :class:`MusicEngine`, the one entry point to generation.

Models a request may name (:func:`model_choices`):

- ``facebook/musicgen-{small,medium,large,stereo-small,stereo-medium,stereo-large}``: real
  checkpoints, read from ``DGX_MUSIC_MODEL_DIR`` or the Hugging Face cache, never downloaded;
- ``tiny``: the randomly initialised MusicGen shipped in ``dgx_music/assets/tiny-musicgen``;
- ``synth``: the procedural arranger (:mod:`dgx_music.generation.synth`);
- ``twin:facebook/musicgen-*``: shape twins, the real architectures with seeded random weights
  (:mod:`dgx_music.generation.twins`), for measuring real-size cost; their audio is noise;
- any local directory holding a transformers MusicGen checkpoint (``config.json`` with
  ``"model_type": "musicgen"``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import secrets
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from dgx_music.config import OUTPUT_SAMPLE_RATE, Settings, get_settings
from dgx_music.errors import ModelLoadError, UnknownModelError
from dgx_music.generation.request import (
    MAX_SEED,
    Backend,
    BatchItem,
    BatchOutcome,
    GenerationRequest,
    GenerationResult,
    ProgressCallback,
)

# torch and transformers (through .musicgen) are imported where a device is chosen or a model
# is built: resolving a name, validating a request or queueing a job must not pay seconds of
# imports for them (``dgx-music submit``, the CLI's history commands).
from dgx_music.generation.twins import TWIN_CHECKPOINTS, is_twin
from dgx_music.memory import keep_freed_memory

if TYPE_CHECKING:
    from dgx_music.generation.continuation import AudioPrompt

logger = logging.getLogger(__name__)

#: Hugging Face checkpoints the registry knows by name.
HF_CHECKPOINTS = (
    "facebook/musicgen-small",
    "facebook/musicgen-medium",
    "facebook/musicgen-large",
    "facebook/musicgen-stereo-small",
    "facebook/musicgen-stereo-medium",
    "facebook/musicgen-stereo-large",
)
#: Registry name of the packaged random MusicGen.
TINY_MODEL = "tiny"
#: Registry name of the procedural arranger.
SYNTH_MODEL = "synth"
#: Directory of the packaged tiny checkpoint.
TINY_MODEL_DIR = Path(__file__).resolve().parent.parent / "assets" / "tiny-musicgen"

ModelKind = Literal["musicgen", "synth"]

#: Jobs of one MusicGen model a worker generates together when DGX_MUSIC_BATCH_SIZE is 0, per
#: device type. The CPU figure is measured (docs/BENCHMARKING.md, ``QueueBatching``): on 2 cores
#: 8 queued 1 s jobs of the small twin drain 3.2x faster at batch 4 than at batch 1, and 4.9x at
#: batch 8 (tiny: 1.2x and 1.4x). The CUDA figure follows the per-step overhead of batch-1
#: decoding on a GPU (a step's time barely grows with a few more rows) and awaits a GPU
#: measurement (``QueueBatchingGpu``).
DEFAULT_BATCH_SIZE = {"cpu": 8, "cuda": 8}

_cpu_warning_lock = threading.Lock()
_cpu_warning_given = False


def model_choices() -> list[str]:
    """Names a request may give as ``model`` (a MusicGen checkpoint directory is also accepted)."""
    return [TINY_MODEL, SYNTH_MODEL, *HF_CHECKPOINTS, *TWIN_CHECKPOINTS]


@dataclass(frozen=True)
class ModelSpec:
    """A resolved model name.

    Parameters
    ----------
    name
        Registry name, or the absolute path of a local checkpoint directory.
    kind
        ``"musicgen"`` (transformers) or ``"synth"``.
    source
        What the backend loads: a directory path, a repository id, or ``"built-in"``.
    """

    name: str
    kind: ModelKind
    source: str


@dataclass(frozen=True)
class ModelInfo:
    """What :meth:`MusicEngine.available_models` reports about one model.

    Parameters
    ----------
    name
        Registry name.
    kind
        ``"musicgen"`` or ``"synth"``.
    available_offline
        Whether it can run now without a download.
    source
        Where its weights are (a directory), the repository id when they are missing, or
        ``"built-in"``.
    """

    name: str
    kind: ModelKind
    available_offline: bool
    source: str


def is_musicgen_checkpoint(path: Path) -> bool:
    """Whether ``path`` is a directory with a ``config.json`` of ``model_type`` ``musicgen``."""
    config = path / "config.json"
    if not config.is_file():
        return False
    try:
        model_type = json.loads(config.read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError, AttributeError):
        return False
    return model_type == "musicgen"


def resolve_model(name: str) -> ModelSpec:
    """Map a request's model name to what serves it.

    Parameters
    ----------
    name
        A name from :func:`model_choices` or a local MusicGen checkpoint directory.

    Raises
    ------
    UnknownModelError
        ``name`` is none of those; the error lists the choices.
    """
    if name == SYNTH_MODEL:
        return ModelSpec(SYNTH_MODEL, "synth", "built-in")
    if name == TINY_MODEL:
        return ModelSpec(TINY_MODEL, "musicgen", str(TINY_MODEL_DIR))
    if name in HF_CHECKPOINTS or is_twin(name):
        return ModelSpec(name, "musicgen", name)
    path = Path(name).expanduser()
    if path.is_dir() and is_musicgen_checkpoint(path):
        resolved = path.resolve()
        if resolved == TINY_MODEL_DIR:
            return ModelSpec(TINY_MODEL, "musicgen", str(TINY_MODEL_DIR))
        return ModelSpec(str(resolved), "musicgen", str(resolved))
    raise UnknownModelError(name, model_choices())


def choose_device(preference: str) -> str:
    """The torch device to run MusicGen on.

    Parameters
    ----------
    preference
        ``"cpu"``; ``"cuda"`` (or ``"cuda:N"``), which must be present; or ``"auto"``, which
        takes CUDA when present and otherwise the CPU, with a warning logged once per process.

    Returns
    -------
    str
        ``"cpu"`` or the CUDA device.

    Raises
    ------
    ModelLoadError
        CUDA was asked for but is not available, or ``preference`` is not a device.
    """
    preference = preference.strip().lower()
    if preference == "cpu":
        return "cpu"
    import torch

    if preference == "cuda" or preference.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ModelLoadError(
                f"device {preference!r} was requested (DGX_MUSIC_DEVICE) but CUDA is not "
                f"available to torch {torch.__version__} (no GPU visible, or a CPU-only build); "
                "set DGX_MUSIC_DEVICE=auto or cpu to run on the CPU"
            )
        _, colon, index = preference.partition(":")
        if colon and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
            raise ModelLoadError(
                f"device {preference!r} does not exist: torch sees "
                f"{torch.cuda.device_count()} CUDA device(s), cuda:0 and up"
            )
        return preference
    if preference == "auto":
        if torch.cuda.is_available():
            return "cuda"
        _warn_cpu_once()
        return "cpu"
    raise ModelLoadError(f"unknown device {preference!r}; use auto, cuda or cpu")


def _warn_cpu_once() -> None:
    global _cpu_warning_given
    with _cpu_warning_lock:
        if _cpu_warning_given:
            return
        _cpu_warning_given = True
    logger.warning(
        "CUDA is not available; MusicGen runs on the CPU, far slower than real time for the "
        "real checkpoints",
        extra={"action": "cpu_fallback"},
    )


def apply_torch_threads(settings: Settings) -> None:
    """Set torch's intra-op threads to ``settings.torch_threads`` when it is positive."""
    if settings.torch_threads <= 0:
        return
    import torch

    if torch.get_num_threads() != settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
        logger.info("torch uses %d CPU threads", settings.torch_threads)


class MusicEngine:
    """Resolves model names, keeps one backend per model, and runs generations.

    Parameters
    ----------
    settings
        Device, CPU fallback, threads and model directory; the process settings by default.

    Notes
    -----
    Backends are built on first use and kept; MusicGen weights load on the first generation
    (or :meth:`MusicgenBackend.load`). Safe to share between threads.
    """

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings if settings is not None else get_settings()
        self._backends: dict[str, Backend] = {}
        self._lock = threading.Lock()
        apply_torch_threads(self.settings)
        # Every process that generates also exports and analyses: keep their buffers' pages.
        keep_freed_memory(self.settings.malloc_keep_mb)

    def backend(self, model_name: str) -> Backend:
        """The backend serving ``model_name``, built on first use.

        Raises
        ------
        UnknownModelError
            The name is not in the registry nor a MusicGen checkpoint directory.
        ModelLoadError
            The configured device cannot be used.
        """
        spec = resolve_model(model_name)
        with self._lock:
            backend = self._backends.get(spec.source)
            if backend is None:
                backend = self._build(spec)
                self._backends[spec.source] = backend
            return backend

    def _build(self, spec: ModelSpec) -> Backend:
        if spec.kind == "synth":
            # Imported here so that the registry works while the arranger is absent or broken.
            from dgx_music.generation.synth import SynthBackend

            return SynthBackend()
        from dgx_music.generation.musicgen import MusicgenBackend

        return MusicgenBackend(
            spec.source,
            name=spec.name,
            device=choose_device(self.settings.device),
            cpu_fallback=self.settings.cpu_fallback,
            model_dir=self.settings.model_dir,
            context_seconds=self.settings.context_seconds,
        )

    def generate(
        self,
        request: GenerationRequest,
        progress: ProgressCallback | None = None,
        continuation: AudioPrompt | None = None,
    ) -> GenerationResult:
        """Generate ``request``; a random seed is chosen (and reported) when it gives none.

        Parameters
        ----------
        request
            A validated request.
        progress
            Called with (steps done, steps total) while the model runs.
        continuation
            A track to continue: the result is that track, then ``request.duration`` seconds of
            new music joined to it (:mod:`dgx_music.generation.continuation`).

        Returns
        -------
        GenerationResult
            float32 audio (channels, samples) at the model's sample rate, Hz, and the seed used.
        """
        result = self.backend(request.model).generate(
            request, seed=_seed_of(request), progress=progress, continuation=continuation
        )
        return attach(continuation, result)

    def batch_limit(self, model_name: str, requested: int = 0) -> int:
        """How many queued jobs of ``model_name`` a worker should generate together.

        Parameters
        ----------
        model_name
            The model of the job a worker claimed.
        requested
            ``DGX_MUSIC_BATCH_SIZE`` of the worker; 0 takes the default of the device the model
            runs on (:data:`DEFAULT_BATCH_SIZE`).

        Returns
        -------
        int
            1 for the synth (it gains nothing from company); for MusicGen ``requested``, or the
            device's default.
        """
        if resolve_model(model_name).kind != "musicgen":
            return 1
        if requested > 0:
            return requested
        device = self.backend(model_name).device.split(":")[0]
        return DEFAULT_BATCH_SIZE.get(device, 1)

    def generate_batch(
        self,
        requests: Sequence[GenerationRequest],
        progress: Sequence[ProgressCallback | None] | None = None,
        continuations: Sequence[AudioPrompt | None] | None = None,
    ) -> list[BatchOutcome]:
        """Generate several requests of one model together; each job's outcome on its own.

        Each request keeps its own seed (one is chosen when it gives none) and its own
        ``progress`` callback; the audio of each equals what :meth:`generate` gives it alone.
        A single request goes through :meth:`generate`.

        Returns
        -------
        list
            Per request, in order: a :class:`GenerationResult`, or the exception that ended that
            job (a failure of the whole batch is every job's outcome).
        """
        callbacks = list(progress) if progress is not None else [None] * len(requests)
        prompts = list(continuations) if continuations is not None else [None] * len(requests)
        if len(requests) == 1:
            try:
                return [self.generate(requests[0], progress=callbacks[0], continuation=prompts[0])]
            except Exception as exc:
                return [exc]
        models = {request.model for request in requests}
        if len(models) != 1:
            raise ValueError(f"a batch holds one model, got {sorted(models)}")
        items = [
            BatchItem(request, _seed_of(request), callback, prompt)
            for request, callback, prompt in zip(requests, callbacks, prompts, strict=True)
        ]
        try:
            outcomes = self.backend(requests[0].model).generate_batch(items)
        except Exception as exc:
            return [exc] * len(items)
        return [
            outcome if isinstance(outcome, Exception) else attach(item.continuation, outcome)
            for item, outcome in zip(items, outcomes, strict=True)
        ]

    def available_models(self) -> list[ModelInfo]:
        """Every registry model and whether it can run offline now. Reads only local files."""
        from dgx_music.generation.checkpoints import cached_checkpoint_dir, local_checkpoint_dir

        models = [
            ModelInfo(
                TINY_MODEL,
                "musicgen",
                is_musicgen_checkpoint(TINY_MODEL_DIR),
                str(TINY_MODEL_DIR),
            ),
            ModelInfo(SYNTH_MODEL, "synth", True, "built-in"),
        ]
        for repo_id in HF_CHECKPOINTS:
            location = local_checkpoint_dir(repo_id, self.settings.model_dir)
            if location is None:
                location = cached_checkpoint_dir(repo_id)
            models.append(
                ModelInfo(
                    repo_id,
                    "musicgen",
                    location is not None,
                    str(location) if location is not None else repo_id,
                )
            )
        models += [
            ModelInfo(name, "musicgen", True, "built-in (random weights)")
            for name in TWIN_CHECKPOINTS
        ]
        return models


def attach(continuation: AudioPrompt | None, result: GenerationResult) -> GenerationResult:
    """``result`` as the continuation of ``continuation``: the given track, then the new part
    laid out as 32 kHz stereo and joined to it (:func:`continuation.join`)."""
    if continuation is None:
        return result
    from dgx_music.audio.export import to_output_layout
    from dgx_music.generation.continuation import join

    new = to_output_layout(result.audio, result.sample_rate)
    return dataclasses.replace(
        result,
        audio=join(continuation.audio, new, OUTPUT_SAMPLE_RATE),
        sample_rate=OUTPUT_SAMPLE_RATE,
        continued_from=continuation.describe(),
    )


def _seed_of(request: GenerationRequest) -> int:
    """The request's seed, or a random one (reported in the result) when it gives none."""
    return request.seed if request.seed is not None else secrets.randbelow(MAX_SEED + 1)


@lru_cache(maxsize=1)
def get_engine() -> MusicEngine:
    """The process-wide engine, built from :func:`dgx_music.config.get_settings`."""
    return MusicEngine()
