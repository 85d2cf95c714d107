"""MusicGen through Hugging Face transformers (``MusicgenForConditionalGeneration``).

One :class:`MusicgenBackend` serves one checkpoint: a ``facebook/musicgen-*`` repository id, found
in ``DGX_MUSIC_MODEL_DIR`` or the Hugging Face cache, or a local directory such as the packaged
``tiny`` model. Every checkpoint loads through the same ``from_pretrained`` calls, always with
``local_files_only=True``: nothing is ever downloaded here.

MusicGen predicts 4 EnCodec codebooks per audio frame, 50 frames per second at 32 kHz, with each
codebook delayed one step behind the previous one; ``frames + 3`` decoding steps therefore give
``frames`` complete frames.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from dgx_music.errors import (
    DgxMusicError,
    GenerationError,
    GpuOutOfMemoryError,
    ModelLoadError,
)
from dgx_music.generation.request import (
    Backend,
    GenerationRequest,
    GenerationResult,
    ProgressCallback,
)

if TYPE_CHECKING:
    from transformers import MusicgenForConditionalGeneration

logger = logging.getLogger(__name__)

#: Sample rate of every MusicGen checkpoint's EnCodec, Hz (the value used before a model loads).
DEFAULT_SAMPLE_RATE = 32_000
#: Codec frames per second of the real checkpoints, Hz (used when a config does not say).
DEFAULT_FRAME_RATE = 50
#: Weight files that mark a cached checkpoint as complete.
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)

#: Serialises seeded generation across every MusicGen backend in the process: transformers
#: samples from torch's global random generator, so two generations running at once would
#: interleave its draws and neither would be reproducible.
_GENERATE_LOCK = threading.Lock()

_OOM_AMOUNT = re.compile(r"Tried to allocate\s+([\d.]+\s*[KMGT]?i?B)", re.IGNORECASE)


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


def _oom_amount(exc: BaseException) -> str | None:
    """The allocation torch reported in an out-of-memory message ("2.00 GiB"), if any."""
    match = _OOM_AMOUNT.search(str(exc))
    return match.group(1) if match else None


def _monotonic(progress: ProgressCallback) -> ProgressCallback:
    """Wrap ``progress`` so that it is called only when the step count grows."""
    last = -1

    def report(done: int, total: int) -> None:
        nonlocal last
        if done > last:
            last = done
            progress(done, total)

    return report


class _ProgressCounter:
    """A logits processor that counts decoding steps and reports them as progress.

    transformers calls every logits processor once per decoding step. (MusicGen's ``generate``
    in transformers 5 hands ``streamer`` objects the start tokens only, so a streamer cannot
    count steps.) It leaves the scores untouched. The callback sees (steps done, ``total``),
    strictly increasing; :meth:`finish` reports (``total``, ``total``) once the audio is
    decoded. An exception the callback raises (a cancelled job, say) is kept in :attr:`error`
    so the backend can re-raise it unchanged.
    """

    def __init__(self, callback: ProgressCallback, total: int) -> None:
        self.callback = callback
        self.total = total
        self.done = 0
        self.reported = -1
        self.error: Exception | None = None

    def report(self, done: int) -> None:
        if done <= self.reported:
            return
        self.reported = done
        try:
            self.callback(done, self.total)
        except Exception as exc:
            self.error = exc
            raise

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        # Report at most total - 1 here: the last step is only done once the codec has decoded.
        self.done += 1
        self.report(min(self.done, self.total - 1))
        return scores

    def finish(self) -> None:
        self.report(self.total)


class MusicgenBackend(Backend):
    """One MusicGen checkpoint, loaded on first use, on one device.

    Parameters
    ----------
    source
        A Hugging Face repository id (``"facebook/musicgen-small"``) or a local checkpoint
        directory.
    name
        Registry name reported in results; defaults to ``source``.
    device
        torch device to run on: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``. Choosing it (``auto``)
        is the engine's job (:func:`dgx_music.generation.engine.choose_device`).
    cpu_fallback
        When the GPU runs out of memory, move the model to the CPU and retry there (it stays on
        the CPU afterwards) instead of raising :class:`GpuOutOfMemoryError`.
    model_dir
        Directory searched for a copy of a repository id before the Hugging Face cache.

    Notes
    -----
    Weights are float16 on CUDA and float32 on the CPU. Loading is guarded by a per-backend lock
    and generation by a process-wide lock, so a backend may be shared by threads; generations
    run one at a time.
    """

    def __init__(
        self,
        source: str | Path,
        *,
        name: str | None = None,
        device: str = "cpu",
        cpu_fallback: bool = True,
        model_dir: Path | None = None,
    ) -> None:
        self.source = str(source)
        self.name = name or self.source
        self.cpu_fallback = cpu_fallback
        self.model_dir = model_dir
        self.sample_rate = DEFAULT_SAMPLE_RATE
        #: Codec frames per second of audio, Hz.
        self.frame_rate = DEFAULT_FRAME_RATE
        self._device = torch.device(device)
        self._model: MusicgenForConditionalGeneration | None = None
        self._processor: Any = None
        self._load_lock = threading.Lock()

    @property
    def device(self) -> str:
        """Device the next generation will run on ("cpu", "cuda", "cuda:1")."""
        return str(self._device)

    @property
    def is_loaded(self) -> bool:
        """Whether the weights are in memory."""
        return self._model is not None

    @property
    def is_local_dir(self) -> bool:
        """Whether ``source`` is a directory rather than a repository id."""
        return Path(self.source).is_dir()

    def _resolve_source(self) -> str:
        """The path or repository id to hand to ``from_pretrained``."""
        if self.is_local_dir:
            return self.source
        local = local_checkpoint_dir(self.source, self.model_dir)
        return str(local) if local is not None else self.source

    def _load_error(self, exc: BaseException) -> ModelLoadError:
        """A message a person can act on, for a checkpoint ``from_pretrained`` could not load."""
        path = Path(self.source).expanduser()
        if path.exists():
            return ModelLoadError(f"cannot load the MusicGen checkpoint in {path}: {exc}")
        if path.is_absolute() or self.source.startswith((".", "~")):
            return ModelLoadError(f"no MusicGen checkpoint at {path}: the directory is missing")
        where = "the Hugging Face cache"
        if self.model_dir is not None:
            where = f"{self.model_dir} (DGX_MUSIC_MODEL_DIR) and {where}"
        return ModelLoadError(
            f"the weights of {self.source} are not on this machine (looked in {where}) or are "
            f"incomplete, and dgx-music never downloads them by itself; "
            f"{download_hint(self.source)}"
        )

    def load(self) -> None:
        """Load the weights and the processor, once; later calls return at once.

        Raises
        ------
        ModelLoadError
            The checkpoint is not on this machine or cannot be read; the message says how to
            fetch it.
        """
        if self._model is not None:
            return
        with self._load_lock:
            if self._model is not None:
                return
            from transformers import AutoProcessor, MusicgenForConditionalGeneration

            source = self._resolve_source()
            dtype = torch.float16 if self._device.type == "cuda" else torch.float32
            started = time.perf_counter()
            try:
                processor = AutoProcessor.from_pretrained(source, local_files_only=True)
                model = MusicgenForConditionalGeneration.from_pretrained(
                    source, local_files_only=True, dtype=dtype
                )
            except (OSError, ValueError, KeyError) as exc:
                raise self._load_error(exc) from exc
            model.eval()
            try:
                model.to(self._device)
            except torch.cuda.OutOfMemoryError as exc:
                torch.cuda.empty_cache()
                if not self.cpu_fallback:
                    raise ModelLoadError(
                        f"{self.name} does not fit in GPU memory "
                        f"(tried to allocate {_oom_amount(exc) or 'an unreported amount'}); "
                        "use a smaller model, free GPU memory or set DGX_MUSIC_CPU_FALLBACK=true"
                    ) from exc
                logger.warning(
                    "%s does not fit in GPU memory; loading it on the CPU instead",
                    self.name,
                    extra={"action": "model_cpu_fallback"},
                )
                model = model.to("cpu", dtype=torch.float32)
                self._device = torch.device("cpu")
            audio_config = model.config.audio_encoder
            self.sample_rate = int(audio_config.sampling_rate)
            self.frame_rate = int(getattr(audio_config, "frame_rate", DEFAULT_FRAME_RATE))
            self._processor = processor
            self._model = model
            logger.info(
                "loaded %s from %s on %s in %.2f s",
                self.name,
                source,
                self._device,
                time.perf_counter() - started,
                extra={"action": "model_load"},
            )

    def steps_for(self, duration: float) -> int:
        """Decoding steps for ``duration`` seconds: one per codec frame, plus the codebook delay.

        The delay is one step per codebook after the first of each channel: 3 for the mono and
        the stereo checkpoints (stereo interleaves 2 x 4 codebooks).

        Parameters
        ----------
        duration
            Clip length, seconds.
        """
        num_codebooks = 4 if self._model is None else int(self._model.decoder.num_codebooks)
        channels = 1 if self._model is None else int(self._model.config.decoder.audio_channels)
        delay = num_codebooks // channels - 1
        return math.ceil(duration * self.frame_rate) + delay

    def generate(
        self,
        request: GenerationRequest,
        *,
        seed: int,
        progress: ProgressCallback | None = None,
    ) -> GenerationResult:
        """Generate exactly ``round(request.duration * sample_rate)`` samples for ``seed``.

        Parameters
        ----------
        request
            Prompt, duration (seconds) and sampling parameters.
        seed
            Seed of torch's random generators; the same seed on the same device gives the same
            audio.
        progress
            Called with (decoding steps done, steps total) after every step, ending at
            (total, total).

        Returns
        -------
        GenerationResult
            float32 audio of shape (channels, samples) at :attr:`sample_rate` Hz.

        Raises
        ------
        ModelLoadError
            The weights are not available offline.
        GpuOutOfMemoryError
            The GPU ran out of memory and CPU fallback is off.
        GenerationError
            Anything else went wrong while generating.
        """
        self.load()
        if progress is not None:
            # A retry on the CPU starts again from step 0; the caller still sees progress only
            # move forward.
            progress = _monotonic(progress)
        with _GENERATE_LOCK:
            started = time.perf_counter()
            oom: torch.cuda.OutOfMemoryError | None = None
            try:
                audio = self._generate_once(request, seed=seed, progress=progress)
            except torch.cuda.OutOfMemoryError as exc:
                # Drop the traceback: its frames hold the failed step's GPU tensors.
                oom = exc.with_traceback(None)
            if oom is not None:
                torch.cuda.empty_cache()
                self._handle_oom(request, oom)
                audio = self._generate_once(request, seed=seed, progress=progress)
            elapsed = time.perf_counter() - started
        logger.info(
            "generated %.2f s with %s on %s in %.2f s",
            request.duration,
            self.name,
            self.device,
            elapsed,
            extra={"action": "generate"},
        )
        return GenerationResult(
            audio=audio,
            sample_rate=self.sample_rate,
            model=self.name,
            device=self.device,
            seed=seed,
            generation_seconds=elapsed,
        )

    def _handle_oom(self, request: GenerationRequest, exc: torch.cuda.OutOfMemoryError) -> None:
        """Move to the CPU after a CUDA out-of-memory error, or raise GpuOutOfMemoryError."""
        amount = _oom_amount(exc)
        asked = f"tried to allocate {amount}" if amount else "allocation size not reported"
        if not self.cpu_fallback:
            raise GpuOutOfMemoryError(
                f"the GPU ran out of memory generating {request.duration:g} s with {self.name} "
                f"({asked}); ask for a shorter clip, use a smaller model, free GPU memory, or "
                "set DGX_MUSIC_CPU_FALLBACK=true to finish on the CPU"
            ) from exc
        logger.warning(
            "the GPU ran out of memory generating %g s with %s (%s); moving the model to the "
            "CPU (float32) and retrying there; it stays on the CPU",
            request.duration,
            self.name,
            asked,
            extra={"action": "gpu_oom_cpu_fallback"},
        )
        assert self._model is not None
        try:
            self._model = self._model.to("cpu", dtype=torch.float32)
        except Exception as move_exc:
            raise GenerationError(
                f"the GPU ran out of memory with {self.name} and moving it to the CPU failed: "
                f"{move_exc}"
            ) from move_exc
        self._device = torch.device("cpu")
        torch.cuda.empty_cache()

    def _generate_once(
        self,
        request: GenerationRequest,
        *,
        seed: int,
        progress: ProgressCallback | None,
    ) -> np.ndarray:
        """Run one seeded generation on the current device; returns (channels, samples)."""
        model = self._model
        assert model is not None and self._processor is not None
        steps = self.steps_for(request.duration)
        counter = _ProgressCounter(progress, steps) if progress is not None else None
        # top_p = 0 means "off" in requests (as in audiocraft); transformers' off is 1.0.
        top_p = request.top_p if 0 < request.top_p < 1 else 1.0
        try:
            from transformers import LogitsProcessorList

            if counter is not None:
                counter.report(0)
            inputs = self._processor(text=[request.prompt], padding=True, return_tensors="pt")
            inputs = inputs.to(self._device)
            torch.manual_seed(seed)  # seeds the CPU and every CUDA device
            with torch.inference_mode():
                values = model.generate(
                    **inputs,
                    do_sample=True,
                    temperature=request.temperature,
                    top_k=request.top_k,
                    top_p=top_p,
                    guidance_scale=request.guidance_scale,
                    max_new_tokens=steps,
                    logits_processor=LogitsProcessorList([counter] if counter is not None else []),
                )
            audio = values[0].to(device="cpu", dtype=torch.float32).numpy()
            if counter is not None:
                counter.finish()
        except torch.cuda.OutOfMemoryError:
            raise
        except Exception as exc:
            if counter is not None and exc is counter.error:
                raise  # the caller's own exception (a cancelled job, say): pass it on unchanged
            if isinstance(exc, DgxMusicError):
                raise
            raise GenerationError(
                f"{self.name} failed to generate {request.duration:g} s on {self.device}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        return _fit_length(audio, round(request.duration * self.sample_rate))


def _fit_length(audio: np.ndarray, samples: int) -> np.ndarray:
    """Trim or zero-pad (channels, n) ``audio`` to exactly ``samples`` samples, float32."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.shape[-1] >= samples:
        return np.ascontiguousarray(audio[..., :samples])
    padded = np.zeros((audio.shape[0], samples), dtype=np.float32)
    padded[:, : audio.shape[-1]] = audio
    return padded
