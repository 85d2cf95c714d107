"""MusicGen through Hugging Face transformers (``MusicgenForConditionalGeneration``).

One :class:`MusicgenBackend` serves one checkpoint: a ``facebook/musicgen-*`` repository id, found
in ``DGX_MUSIC_MODEL_DIR`` or the Hugging Face cache, or a local directory such as the packaged
``tiny`` model. Every checkpoint loads through the same ``from_pretrained`` calls, always with
``local_files_only=True``: nothing is ever downloaded here.

MusicGen predicts 4 EnCodec codebooks per audio frame, 50 frames per second at 32 kHz, with each
codebook delayed one step behind the previous one; ``frames + 3`` decoding steps therefore give
``frames`` complete frames. Each step is one forward call of the decoder (the first, the prefill,
reads the start token; transformers 5 runs that prefill twice), so ``d`` seconds cost
``ceil(50·d) + 4`` decoder calls, one text-encoder call and one EnCodec decode per job, whatever
the weights: the decoder has no end token (docs/TWINS.md).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch

from dgx_music.config import get_settings
from dgx_music.errors import (
    DgxMusicError,
    GenerationError,
    GpuOutOfMemoryError,
    ModelLoadError,
)
from dgx_music.generation import codec
from dgx_music.generation.checkpoints import download_hint, local_checkpoint_dir
from dgx_music.generation.continuation import AudioPrompt, seconds_to_generate
from dgx_music.generation.request import (
    Backend,
    BatchItem,
    BatchOutcome,
    GenerationRequest,
    GenerationResult,
    ProgressCallback,
)
from dgx_music.generation.sampling import JobSampler, SamplingComplete, SamplingJob
from dgx_music.generation.twins import build_twin, is_twin
from dgx_music.generation.windows import WindowedJob, frames_for, plan_windows, window_groups

if TYPE_CHECKING:
    from transformers import MusicgenForConditionalGeneration

logger = logging.getLogger(__name__)

#: Sample rate of every MusicGen checkpoint's EnCodec, Hz (the value used before a model loads).
DEFAULT_SAMPLE_RATE = 32_000
#: Codec frames per second of the real checkpoints, Hz (used when a config does not say).
DEFAULT_FRAME_RATE = 50
_OOM_AMOUNT = re.compile(r"Tried to allocate\s+([\d.]+\s*[KMGT]?i?B)", re.IGNORECASE)


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


class _SharedUse:
    """Many generations share the model; moving it to another device needs it to itself.

    A readers-writer lock: :meth:`shared` for each generation, :meth:`exclusive` for the
    out-of-memory fallback, which waits until no generation is running before it moves the
    weights (another thread's tensors would otherwise change device under it).
    """

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._users = 0
        self._moving = False

    @contextmanager
    def shared(self) -> Iterator[None]:
        with self._condition:
            self._condition.wait_for(lambda: not self._moving)
            self._users += 1
        try:
            yield
        finally:
            with self._condition:
                self._users -= 1
                self._condition.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._condition:
            self._condition.wait_for(lambda: not self._moving)
            self._moving = True
            self._condition.wait_for(lambda: self._users == 0)
        try:
            yield
        finally:
            with self._condition:
                self._moving = False
                self._condition.notify_all()


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
    context_seconds
        Seconds of tokens that prompt each window after the first of a track longer than 30 s
        (:mod:`dgx_music.generation.windows`); ``DGX_MUSIC_CONTEXT_SECONDS`` by default.

    Notes
    -----
    Weights are float16 on CUDA and float32 on the CPU. A backend may be shared by threads:
    generations run side by side, each drawing from its own seeded generator; only loading,
    the tokenizer and the out-of-memory move to the CPU are serialised.
    """

    def __init__(
        self,
        source: str | Path,
        *,
        name: str | None = None,
        device: str = "cpu",
        cpu_fallback: bool = True,
        model_dir: Path | None = None,
        context_seconds: float | None = None,
    ) -> None:
        self.source = str(source)
        #: Seconds of earlier tokens that prompt each window of a track past 30 s.
        self.context_seconds = (
            context_seconds if context_seconds is not None else get_settings().context_seconds
        )
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
        self._tokenizer_lock = threading.Lock()
        self._use = _SharedUse()

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
                if is_twin(self.source):
                    model, processor = build_twin(self.source, dtype=dtype)
                else:
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

    @property
    def codebook_delays(self) -> list[int]:
        """Steps each codebook lags behind the first: codebook *k* of frame *f* is drawn at step
        ``f + delay[k]`` (stereo checkpoints interleave left and right, two per delay)."""
        assert self._model is not None
        channels = int(self._model.config.decoder.audio_channels)
        return [book // channels for book in range(int(self._model.decoder.num_codebooks))]

    def generate(
        self,
        request: GenerationRequest,
        *,
        seed: int,
        progress: ProgressCallback | None = None,
        continuation: AudioPrompt | None = None,
    ) -> GenerationResult:
        """Generate exactly ``round(request.duration * sample_rate)`` samples for ``seed``.

        Parameters
        ----------
        request
            Prompt, duration (seconds) and sampling parameters.
        seed
            Seeds the generation's own random generator; the same seed on the same device gives
            the same audio, whatever runs beside it.
        progress
            Called with (decoding steps done, steps total) after every step, ending at
            (total, total), counting the steps of every window of a long track. What it raises
            ends the generation and is raised unchanged.
        continuation
            A track to continue: its last seconds prompt the model, and the result holds the new
            part only, :data:`~dgx_music.generation.continuation.CROSSFADE_SECONDS` longer for
            the join (:meth:`MusicEngine.generate` does the join).

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
        (outcome,) = self.generate_batch([BatchItem(request, seed, progress, continuation)])
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def generate_batch(self, items: Sequence[BatchItem]) -> list[BatchOutcome]:
        """Generate several jobs in one decoding loop; each job's audio is its audio alone.

        Prompts are padded to the longest, the loop runs to the longest duration, and each job's
        codes are cut to its own length before they are decoded. Every job draws from its own
        generator (:class:`~dgx_music.generation.sampling.JobSampler`).

        Returns
        -------
        list
            Per job, in order: its :class:`GenerationResult`, or the exception its progress
            callback raised (that job alone stopped; the others went on).

        Raises
        ------
        ModelLoadError, GpuOutOfMemoryError, GenerationError
            A failure of the whole batch (as :meth:`generate`).
        """
        self.load()
        # A retry on the CPU starts again from step 0; each caller still sees progress only
        # move forward.
        items = [
            dataclasses.replace(item, progress=_monotonic(item.progress))
            if item.progress is not None
            else item
            for item in items
        ]
        started = time.perf_counter()
        oom: torch.cuda.OutOfMemoryError | None = None
        try:
            with self._use.shared():
                ran_on = self._device
                outcomes = self._generate_once(items)
        except torch.cuda.OutOfMemoryError as exc:
            # Drop the traceback: its frames hold the failed step's GPU tensors.
            oom = exc.with_traceback(None)
        if oom is not None:
            torch.cuda.empty_cache()
            longest = max(item.request.duration for item in items)
            self._handle_oom(longest, len(items), oom, ran_on)
            with self._use.shared():
                outcomes = self._generate_once(items)
        elapsed = time.perf_counter() - started
        logger.info(
            "generated %d job(s) of up to %.2f s with %s on %s in %.2f s",
            len(items),
            max(item.request.duration for item in items),
            self.name,
            self.device,
            elapsed,
            extra={"action": "generate"},
        )
        return [
            outcome
            if isinstance(outcome, Exception)
            else GenerationResult(
                audio=outcome[0],
                codes=outcome[1],
                sample_rate=self.sample_rate,
                model=self.name,
                device=self.device,
                seed=item.seed,
                generation_seconds=elapsed,
            )
            for item, outcome in zip(items, outcomes, strict=True)
        ]

    def _handle_oom(
        self,
        duration: float,
        jobs: int,
        exc: torch.cuda.OutOfMemoryError,
        ran_on: torch.device,
    ) -> None:
        """Move to the CPU after a CUDA out-of-memory error on ``ran_on``, or raise
        GpuOutOfMemoryError."""
        amount = _oom_amount(exc)
        asked = f"tried to allocate {amount}" if amount else "allocation size not reported"
        what = f"{duration:g} s" if jobs == 1 else f"{jobs} jobs of up to {duration:g} s"
        if not self.cpu_fallback:
            raise GpuOutOfMemoryError(
                f"the GPU ran out of memory generating {what} with {self.name} "
                f"({asked}); ask for a shorter clip, use a smaller model or batch, free GPU "
                "memory, or set DGX_MUSIC_CPU_FALLBACK=true to finish on the CPU"
            ) from exc
        # Wait until no other generation uses the model, then move it (once: a thread that
        # ran out of memory at the same time finds it moved already).
        with self._use.exclusive():
            if self._device != ran_on:
                return
            logger.warning(
                "the GPU ran out of memory generating %s with %s (%s); moving the model to the "
                "CPU (float32) and retrying there; it stays on the CPU",
                what,
                self.name,
                asked,
                extra={"action": "gpu_oom_cpu_fallback"},
            )
            assert self._model is not None
            try:
                self._model = self._model.to("cpu", dtype=torch.float32)
            except Exception as move_exc:
                raise GenerationError(
                    f"the GPU ran out of memory with {self.name} and moving it to the CPU "
                    f"failed: {move_exc}"
                ) from move_exc
            self._device = torch.device("cpu")
            torch.cuda.empty_cache()

    def _generate_once(
        self, items: Sequence[BatchItem]
    ) -> list[tuple[np.ndarray, np.ndarray] | Exception]:
        """Every window of ``items`` on the current device, then each job's decode: per job, its
        new audio (channels, samples) and codes (codebooks, frames), or what stopped it."""
        model = self._model
        assert model is not None and self._processor is not None
        delay = max(self.codebook_delays)
        longest = max(item.request.duration for item in items)
        try:
            jobs = [self._windowed(item, delay) for item in items]
            for job in jobs:
                if job.item.progress is not None:
                    job.item.progress(0, job.total_steps)
            with torch.inference_mode():
                index = 0
                while groups := window_groups(jobs, index):
                    for group in groups:
                        self._run_window(group, index)
                    index += 1
                return [self._finish(job) for job in jobs]
        except torch.cuda.OutOfMemoryError:
            raise
        except Exception as exc:
            if isinstance(exc, DgxMusicError):
                raise
            raise GenerationError(
                f"{self.name} failed to generate {longest:g} s on {self.device}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc

    def _windowed(self, item: BatchItem, delay: int) -> WindowedJob:
        """``item`` planned as windows, with its generator and its prompt's codes."""
        model = self._model
        assert model is not None
        seconds = seconds_to_generate(item.request.duration, item.continuation)
        prompt = torch.zeros((int(model.decoder.num_codebooks), 0), dtype=torch.long)
        if item.continuation is not None:
            channels = int(model.config.decoder.audio_channels)
            with torch.inference_mode():
                prompt = codec.encode(model, item.continuation.conditioning(channels))
        prompt = prompt.to(self._device)
        windows = plan_windows(
            frames_for(seconds, self.frame_rate),
            context_frames=round(self.context_seconds * self.frame_rate),
            prompt_frames=int(prompt.shape[-1]),
        )
        return WindowedJob(
            item=item,
            windows=windows,
            delay=delay,
            generator=torch.Generator(device=self._device).manual_seed(item.seed),
            tokens=prompt,
            prompt_frames=int(prompt.shape[-1]),
        )

    def _run_window(self, group: Sequence[WindowedJob], index: int) -> None:
        """Window ``index`` of ``group`` (equal prompts' lengths) in one decoding loop; each
        job's new codes are appended to its tokens, or its error recorded."""
        model = self._model
        assert model is not None
        requests = [job.item.request for job in group]
        sampling = [
            SamplingJob(
                seed=job.item.seed,
                steps=job.steps(index),
                temperature=job.item.request.temperature,
                top_k=job.item.request.top_k,
                top_p=job.item.request.top_p,
                guidance_scale=job.item.request.guidance_scale,
                progress=job.progress(index),
                generator=job.generator,
            )
            for job in group
        ]
        sampler = JobSampler(
            sampling,
            num_codebooks=int(model.decoder.num_codebooks),
            guided=any(request.guidance_scale > 1 for request in requests),
            device=self._device,
        )
        from transformers import LogitsProcessorList

        # The fast tokenizer is not reentrant ("Already borrowed" from a second thread).
        with self._tokenizer_lock:
            inputs = self._processor(
                text=[request.prompt for request in requests], padding=True, return_tensors="pt"
            )
        inputs = inputs.to(self._device)
        context = group[0].windows[index].context
        if context:
            # (jobs * codebooks, frames), undelayed: the library lays out the delay pattern.
            inputs["decoder_input_ids"] = torch.cat([job.context(index) for job in group])
        delays = self.codebook_delays
        try:
            # Greedy: the sampler does the whole draw and hands the library a one-hot; the
            # guidance scale only has to be > 1 for the unconditional half to exist. The sampler
            # stops the loop after the longest job's last step. The limit lies past it by the
            # codebook delay so that the library's end-of-sequence padding never starts: it
            # would pad a job's last frames differently depending on what else is in the batch.
            model.generate(
                **inputs,
                do_sample=False,
                guidance_scale=max(request.guidance_scale for request in requests),
                max_new_tokens=max(job.steps for job in sampling) + max(delays),
                logits_processor=LogitsProcessorList([sampler]),
            )
        except SamplingComplete:
            pass
        else:
            raise GenerationError(
                f"{self.name} stopped after {sampler.steps_done} of "
                f"{max(job.steps for job in sampling)} decoding steps"
            )
        for position, job in enumerate(group):
            if sampler.errors[position] is not None:
                job.error = cast(Exception, sampler.errors[position])
            else:
                job.add(sampler.codes(position, job.windows[index].new, delays))

    def _finish(self, job: WindowedJob) -> tuple[np.ndarray, np.ndarray] | Exception:
        """The job's audio from its own codes (decoded in chunks, a continuation's prompt as
        context only), and the codes; or what stopped it."""
        if job.error is not None:
            return job.error
        model = self._model
        assert model is not None
        seconds = seconds_to_generate(job.item.request.duration, job.item.continuation)
        audio = codec.decode(model, job.tokens, start=job.prompt_frames)
        audio = _fit_length(audio, round(seconds * self.sample_rate))
        if job.item.progress is not None:
            try:
                job.item.progress(job.total_steps, job.total_steps)
            except Exception as exc:
                return exc
        return audio, job.new_codes.to("cpu").numpy()


def _fit_length(audio: np.ndarray, samples: int) -> np.ndarray:
    """Trim or zero-pad (channels, n) ``audio`` to exactly ``samples`` samples, float32."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.shape[-1] >= samples:
        return np.ascontiguousarray(audio[..., :samples])
    padded = np.zeros((audio.shape[0], samples), dtype=np.float32)
    padded[:, : audio.shape[-1]] = audio
    return padded
