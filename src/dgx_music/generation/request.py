"""Request and result types of a generation, and the one validator for requests."""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dgx_music.config import get_settings
from dgx_music.errors import ValidationError

if TYPE_CHECKING:
    import numpy as np

    from dgx_music.generation.continuation import AudioPrompt

#: Called with (steps done, steps total) while a model generates.
ProgressCallback = Callable[[int, int], None]

#: MusicGen's sampling defaults, as in the checkpoints' generation_config.json.
DEFAULT_TEMPERATURE = 1.0
DEFAULT_TOP_K = 250
DEFAULT_TOP_P = 0.0
DEFAULT_GUIDANCE = 3.0
#: Largest seed accepted (torch's manual_seed takes 64-bit values; we keep to 32 for portability).
MAX_SEED = 2**32 - 1
#: Largest top_k accepted: the database column is a 32-bit integer, and no vocabulary is larger.
MAX_TOP_K = 2**31 - 1


def _check_number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationError(name, f"must be a number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise ValidationError(name, "must be a finite number")
    return float(value)


def _generation_id(value: Any) -> str:
    """``value`` as a generation id in canonical form (lower-case UUID with hyphens)."""
    if not isinstance(value, str):
        raise ValidationError("continue_from", "must be a generation id (a UUID)")
    try:
        return str(uuid.UUID(value.strip()))
    except ValueError as exc:
        raise ValidationError(
            "continue_from", f"{value!r} is not a generation id (a UUID)", limit="a UUID"
        ) from exc


@dataclass(frozen=True, kw_only=True)
class GenerationRequest:
    """What to generate. Construction validates every field.

    Parameters
    ----------
    prompt
        Text description; stripped, 1..``max_prompt_length`` characters, kept verbatim otherwise.
    duration
        Length of the clip, seconds; 0 < duration <= ``max_duration``.
    model
        A registry name (see :func:`dgx_music.generation.engine.model_choices`) or a local
        checkpoint directory; empty means the configured default.
    seed
        Random seed, 0..2**32-1; ``None`` lets the engine choose one and report it.
    temperature, top_k, top_p, guidance_scale
        Sampling: temperature > 0, top_k >= 0 (0 disables), top_p in [0, 1] (0 disables),
        classifier-free guidance >= 1 (1 disables).
    continue_from
        The id (a UUID) of a completed generation whose track this one continues: the output is
        that track, then ``duration`` seconds of new music. Whether it exists and is completed is
        checked where the history is (the API's submit, the worker).
    """

    prompt: str
    duration: float
    model: str = ""
    seed: int | None = None
    temperature: float = DEFAULT_TEMPERATURE
    top_k: int = DEFAULT_TOP_K
    top_p: float = DEFAULT_TOP_P
    guidance_scale: float = DEFAULT_GUIDANCE
    continue_from: str | None = None

    def __post_init__(self) -> None:
        settings = get_settings()
        if not isinstance(self.prompt, str):
            raise ValidationError("prompt", "must be text")
        prompt = self.prompt.strip()
        if not prompt:
            raise ValidationError("prompt", "must not be empty", limit="at least 1 character")
        if len(prompt) > settings.max_prompt_length:
            raise ValidationError(
                "prompt",
                f"is {len(prompt)} characters; the limit is {settings.max_prompt_length}",
                limit=f"at most {settings.max_prompt_length} characters",
            )
        if "\x00" in prompt:
            raise ValidationError("prompt", "must not contain NUL characters")
        try:
            prompt.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValidationError(
                "prompt", "must be valid Unicode text (it holds an unpaired surrogate)"
            ) from exc
        object.__setattr__(self, "prompt", prompt)

        duration = _check_number("duration", self.duration)
        if duration <= 0 or duration > settings.max_duration:
            raise ValidationError(
                "duration",
                f"must be greater than 0 and at most {settings.max_duration:g} seconds, "
                f"got {duration:g}",
                limit=f"0 < duration <= {settings.max_duration:g}",
            )
        object.__setattr__(self, "duration", duration)

        if not isinstance(self.model, str):
            raise ValidationError("model", "must be text")
        object.__setattr__(self, "model", self.model.strip() or settings.default_model)

        if self.seed is not None:
            if isinstance(self.seed, bool) or not isinstance(self.seed, int):
                raise ValidationError("seed", "must be an integer")
            if not 0 <= self.seed <= MAX_SEED:
                raise ValidationError(
                    "seed", f"must be between 0 and {MAX_SEED}", limit=f"0 <= seed <= {MAX_SEED}"
                )

        if _check_number("temperature", self.temperature) <= 0:
            raise ValidationError("temperature", "must be greater than 0", limit="> 0")
        if (
            isinstance(self.top_k, bool)
            or not isinstance(self.top_k, int)
            or not 0 <= self.top_k <= MAX_TOP_K
        ):
            raise ValidationError(
                "top_k",
                f"must be an integer from 0 to {MAX_TOP_K}",
                limit=f"0 <= top_k <= {MAX_TOP_K}",
            )
        if not 0 <= _check_number("top_p", self.top_p) <= 1:
            raise ValidationError("top_p", "must be between 0 and 1", limit="0 <= top_p <= 1")
        if _check_number("guidance_scale", self.guidance_scale) < 1:
            raise ValidationError("guidance_scale", "must be at least 1", limit=">= 1")
        if self.continue_from is not None:
            object.__setattr__(self, "continue_from", _generation_id(self.continue_from))

    def to_dict(self) -> dict[str, Any]:
        return {
            "prompt": self.prompt,
            "duration": self.duration,
            "model": self.model,
            "seed": self.seed,
            "temperature": self.temperature,
            "top_k": self.top_k,
            "top_p": self.top_p,
            "guidance_scale": self.guidance_scale,
            "continue_from": self.continue_from,
        }


@dataclass(frozen=True, kw_only=True)
class GenerationResult:
    """What a model produced.

    ``audio`` is float32 with shape (channels, samples) at ``sample_rate`` Hz, not yet
    loudness-normalised. ``realtime_factor`` is generation seconds per second of audio
    (below 1 is faster than real time).
    """

    audio: np.ndarray
    sample_rate: int
    model: str
    device: str
    seed: int
    generation_seconds: float
    #: What the model itself knows about the music (the synth model reports its tempo and key).
    reported: dict[str, Any] = field(default_factory=dict)
    #: The EnCodec codes the audio was decoded from, int64 (codebooks, frames); MusicGen only.
    #: A continuation's are those of its new part.
    codes: np.ndarray | None = None
    #: What the audio continues (:meth:`AudioPrompt.describe`), for a continuation.
    continued_from: dict[str, Any] | None = None

    @property
    def duration(self) -> float:
        return self.audio.shape[-1] / self.sample_rate

    @property
    def realtime_factor(self) -> float:
        return self.generation_seconds / self.duration if self.duration > 0 else math.inf


@dataclass(frozen=True)
class BatchItem:
    """One job of a batch: its request, its seed, its own progress callback and, for a
    continuation, the track it continues."""

    request: GenerationRequest
    seed: int
    progress: ProgressCallback | None = None
    continuation: AudioPrompt | None = None


#: What a batch gives back for each job: its result, or what went wrong with that job alone.
BatchOutcome = GenerationResult | Exception


class Backend:
    """What every model backend implements (``musicgen`` for transformers checkpoints, ``synth``).

    A backend is configured once (model, device) and may be called from several threads; it must
    serialise access to shared model state itself.
    """

    #: Registry name of the model this backend serves.
    name: str = ""
    #: Native output sample rate, Hz.
    sample_rate: int = 32_000

    @property
    def device(self) -> str:
        """Device the next generation will run on ("cpu", "cuda", "cuda:1")."""
        return "cpu"

    def generate(
        self,
        request: GenerationRequest,
        *,
        seed: int,
        progress: ProgressCallback | None = None,
        continuation: AudioPrompt | None = None,
    ) -> GenerationResult:
        """Generate ``request.duration`` seconds of audio, exactly, reproducibly for ``seed``.

        With ``continuation``, generate what follows that track instead (conditioned on it where
        the model can hear audio), ``CROSSFADE_SECONDS`` longer: the engine joins the two."""
        raise NotImplementedError

    def generate_batch(self, items: Sequence[BatchItem]) -> list[BatchOutcome]:
        """Generate several jobs; each gets exactly what :meth:`generate` gives it alone.

        A backend that cannot share work between jobs runs them one after the other. One job's
        failure is that job's outcome and does not stop the others.
        """
        outcomes: list[BatchOutcome] = []
        for item in items:
            try:
                outcomes.append(
                    self.generate(
                        item.request,
                        seed=item.seed,
                        progress=item.progress,
                        continuation=item.continuation,
                    )
                )
            except Exception as exc:
                outcomes.append(exc)
        return outcomes
