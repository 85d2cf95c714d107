"""What the API reads and writes: request bodies, public views of jobs, and the error body.

These are pydantic models of the HTTP contract, kept apart from the queue's :class:`Job` record
and the ORM rows: ``GenerationCreate`` is what a client sends, ``GenerationPublic`` and
``GenerationsPublic`` what it gets back. Values are checked by the one request validator,
:class:`~dgx_music.generation.request.GenerationRequest`; the models here check only JSON types,
so every rule has one message, whichever client breaks it.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from dgx_music.audio.calibration import UNCERTAIN_BELOW
from dgx_music.generation.request import (
    DEFAULT_GUIDANCE,
    DEFAULT_TEMPERATURE,
    DEFAULT_TOP_K,
    DEFAULT_TOP_P,
    MAX_SEED,
    GenerationRequest,
)
from dgx_music.jobs.records import Job, JobStatus

#: Prefix of every API route.
API_PREFIX = "/api/v1"
#: Largest ``top_k`` the database column holds (a 32-bit signed integer).
MAX_TOP_K = 2**31 - 1
#: Media type of every generated file.
AUDIO_MEDIA_TYPE = "audio/wav"

EXAMPLE_ID = "3f6c1f8e-8d0a-4c53-9a57-0c4f5a1d2b7e"


def generation_url(generation_id: str) -> str:
    """Path of a generation's resource, as sent in ``Location`` headers."""
    return f"{API_PREFIX}/generations/{generation_id}"


# --- errors -------------------------------------------------------------------------------


class FieldErrorPublic(BaseModel):
    """One rule a request broke."""

    field: str = Field(description="The offending field: `prompt`, `duration`, `limit`, `body`...")
    message: str = Field(description="What is wrong, for a person.")
    limit: str | None = Field(default=None, description="The rule, when there is one.")


class ErrorPublic(BaseModel):
    """The body of every error response (4xx and 5xx)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "error": "validation_error",
                    "message": "duration: must be greater than 0 and at most 30 seconds, got 0",
                    "detail": [
                        {
                            "field": "duration",
                            "message": "must be greater than 0 and at most 30 seconds, got 0",
                            "limit": "0 < duration <= 30",
                        }
                    ],
                },
                {
                    "error": "not_found",
                    "message": f"no generation with id {EXAMPLE_ID}",
                    "detail": [],
                },
            ]
        }
    )

    error: str = Field(
        description="Machine-readable code: `validation_error`, `not_found`, `conflict`, "
        "`unauthorized`, `payload_too_large`, `service_unavailable`, `internal_error`..."
    )
    message: str = Field(description="What went wrong and what to do, for a person.")
    detail: list[FieldErrorPublic] = Field(
        default_factory=list, description="Field-level problems (validation errors only)."
    )


# --- generations --------------------------------------------------------------------------


class GenerationCreate(BaseModel):
    """A request to generate a clip."""

    model_config = ConfigDict(
        strict=True,
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"prompt": "warm lofi hip hop groove, 84 bpm in A minor", "duration": 8},
                {
                    "prompt": "epic orchestral theme with choir",
                    "duration": 15,
                    "model": "facebook/musicgen-small",
                    "seed": 42,
                    "temperature": 1.0,
                    "top_k": 250,
                    "top_p": 0.0,
                    "guidance_scale": 3.0,
                },
            ]
        },
    )

    prompt: str = Field(
        description="What to generate. Surrounding whitespace is removed; 1 to "
        "`max_prompt_length` characters (see `GET /info`) remain, stored verbatim.",
        examples=["warm lofi hip hop groove, 84 bpm in A minor"],
    )
    duration: float = Field(
        description="Length of the clip, seconds: greater than 0, at most `max_duration`.",
        examples=[8.0],
    )
    model: str | None = Field(
        default=None,
        description="A model name from `GET /models`; the server's default when omitted.",
        examples=["synth"],
    )
    seed: int | None = Field(
        default=None,
        description=f"Random seed, 0..{MAX_SEED}, for reproducible output; chosen when omitted.",
        json_schema_extra={"minimum": 0, "maximum": MAX_SEED},
    )
    temperature: float = Field(
        default=DEFAULT_TEMPERATURE,
        description="Sampling temperature, greater than 0.",
        json_schema_extra={"exclusiveMinimum": 0},
    )
    top_k: int = Field(
        default=DEFAULT_TOP_K,
        le=MAX_TOP_K,
        description="Sample from the k most likely tokens; 0 disables.",
        json_schema_extra={"minimum": 0},
    )
    top_p: float = Field(
        default=DEFAULT_TOP_P,
        description="Nucleus sampling threshold, 0..1; 0 disables.",
        json_schema_extra={"minimum": 0, "maximum": 1},
    )
    guidance_scale: float = Field(
        default=DEFAULT_GUIDANCE,
        description="Classifier-free guidance, at least 1; 1 disables.",
        json_schema_extra={"minimum": 1},
    )
    continue_from: str | None = Field(
        default=None,
        description="The id of a completed generation to continue: the result is its track, "
        "then `duration` seconds of new music (the last 25 s of the track condition the model).",
        json_schema_extra={"format": "uuid"},
    )

    @field_validator("prompt", "model")
    @classmethod
    def _encodable(cls, value: str | None) -> str | None:
        # JSON may carry lone UTF-16 surrogates ("\ud800"), which no database can store.
        if value is not None:
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError("must be valid Unicode text (it holds a lone surrogate)") from None
        return value

    def to_request(self) -> GenerationRequest:
        """The validated generation request.

        Raises
        ------
        dgx_music.errors.ValidationError
            A value is out of its range; the error names the field.
        """
        return GenerationRequest(
            prompt=self.prompt,
            duration=self.duration,
            model=self.model or "",
            seed=self.seed,
            temperature=self.temperature,
            top_k=self.top_k,
            top_p=self.top_p,
            guidance_scale=self.guidance_scale,
            continue_from=self.continue_from,
        )


class AudioPublic(BaseModel):
    """The WAV file of a completed generation."""

    url: str = Field(description="Where to download it (supports Range and If-None-Match).")
    waveform_url: str = Field(description="Peaks for drawing its waveform.")
    media_type: str = AUDIO_MEDIA_TYPE
    size_bytes: int = Field(description="File size, bytes.")
    sha256: str = Field(description="SHA-256 of the file, hex; also its ETag.")
    sample_rate: int = Field(description="Hz.")
    channels: int
    duration: float = Field(description="Length of the file, seconds.")


class MetadataPublic(BaseModel):
    """What analysing the finished audio measured."""

    tempo_bpm: float | None = Field(description="Estimated tempo, BPM.")
    tempo_confidence: float | None = Field(
        default=None,
        description="Chance that the tempo is right (within 2 %, or half or double it), 0..1.",
    )
    key: str | None = Field(description='Estimated key, e.g. "A minor".')
    key_confidence: float | None = Field(
        default=None, description="Chance that the key is exactly right, 0..1."
    )
    flags: list[str] = Field(
        default_factory=list,
        description=(
            "`tempo_uncertain` / `key_uncertain`: that value's confidence is below "
            f"{UNCERTAIN_BELOW}, so it is a guess, not a fact. Then the export's own flags, "
            "such as `silent`."
        ),
    )
    lufs: float | None = Field(description="Integrated loudness, LUFS (ITU-R BS.1770-4).")
    true_peak_dbtp: float | None = Field(description="True peak, dBTP.")
    details: dict[str, Any] = Field(
        default_factory=dict, description="Every measured value, and the export's flags."
    )


class GenerationPublic(BaseModel):
    """A generation: its request, where it is in the queue, and its result."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": EXAMPLE_ID,
                    "prompt": "warm lofi hip hop groove, 84 bpm in A minor",
                    "status": "processing",
                    "model": "synth",
                    "device": None,
                    "duration": 8.0,
                    "seed": 42,
                    "temperature": 1.0,
                    "top_k": 250,
                    "top_p": 0.0,
                    "guidance_scale": 3.0,
                    "continue_from": None,
                    "attempts": 1,
                    "progress": 0.45,
                    "created_at": "2025-01-01T12:00:00Z",
                    "started_at": "2025-01-01T12:00:01Z",
                    "completed_at": None,
                    "generation_seconds": None,
                    "audio": None,
                    "metadata": None,
                    "error": None,
                }
            ]
        }
    )

    id: uuid.UUID
    prompt: str
    status: JobStatus
    model: str
    device: str | None = Field(description="Where the model ran, once it has.")
    duration: float = Field(description="Requested length, seconds.")
    seed: int | None
    temperature: float
    top_k: int
    top_p: float
    guidance_scale: float
    continue_from: uuid.UUID | None = Field(
        default=None, description="The generation whose track this one continues."
    )
    attempts: int = Field(description="How many times a worker has claimed it.")
    progress: float = Field(ge=0, le=1, description="Fraction done, 0..1.")
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    generation_seconds: float | None = Field(description="Model time, seconds.")
    audio: AudioPublic | None = Field(description="The file; set once completed.")
    metadata: MetadataPublic | None = Field(description="Tempo, key, loudness; once completed.")
    error: str | None = Field(description="Why it failed, was cancelled or was re-queued.")

    @classmethod
    def from_job(cls, job: Job) -> GenerationPublic:
        completed = job.status is JobStatus.COMPLETED and job.file_path is not None
        url = generation_url(job.id)
        audio = None
        metadata = None
        if completed:
            audio = AudioPublic(
                url=f"{url}/audio",
                waveform_url=f"{url}/waveform",
                size_bytes=job.file_size or 0,
                sha256=job.sha256 or "",
                sample_rate=job.sample_rate or 0,
                channels=job.channels or 0,
                duration=job.actual_duration or 0.0,
            )
            details = job.metadata or {}
            metadata = MetadataPublic(
                tempo_bpm=job.tempo_bpm,
                tempo_confidence=details.get("tempo_confidence"),
                key=job.key,
                key_confidence=details.get("key_confidence"),
                flags=list(details.get("flags", [])),
                lufs=job.lufs,
                true_peak_dbtp=job.true_peak,
                details=job.metadata,
            )
        return cls(
            id=uuid.UUID(job.id),
            prompt=job.prompt,
            status=job.status,
            model=job.model,
            device=job.device,
            duration=job.duration,
            seed=job.seed,
            temperature=job.temperature,
            top_k=job.top_k,
            top_p=job.top_p,
            guidance_scale=job.guidance_scale,
            continue_from=uuid.UUID(job.continue_from) if job.continue_from else None,
            attempts=job.attempts,
            progress=min(1.0, max(0.0, job.progress)),
            created_at=job.created_at,
            started_at=job.started_at,
            completed_at=job.completed_at,
            generation_seconds=job.generation_seconds,
            audio=audio,
            metadata=metadata,
            error=job.error,
        )


class GenerationsPublic(BaseModel):
    """One page of generations, newest first."""

    data: list[GenerationPublic]
    count: int = Field(description="How many generations match the filter, in all pages.")
    limit: int
    offset: int


class WaveformPublic(BaseModel):
    """The outline of a track: per column, the lowest and highest sample (mono mix, -1..1)."""

    id: uuid.UUID
    points: int = Field(description="Number of columns.")
    duration: float = Field(description="Length of the track, seconds.")
    minimum: list[float]
    maximum: list[float]


# --- models and service facts -------------------------------------------------------------


class ModelPublic(BaseModel):
    """A model a request may name."""

    name: str
    kind: Literal["musicgen", "synth"]
    available: bool = Field(description="Whether its weights are on this server.")
    default: bool = Field(description="Whether requests without a model use it.")


class ModelsPublic(BaseModel):
    data: list[ModelPublic]
    count: int
    default_model: str


class InfoPublic(BaseModel):
    """Facts a client needs before it submits."""

    version: str
    default_model: str
    max_duration: float = Field(
        description="Longest clip, seconds; MusicGen makes a clip past 30 s in windows."
    )
    context_seconds: float = Field(
        description="Seconds of music that prompt each window after the first of a long clip."
    )
    max_continue_seconds: float = Field(
        description="Longest track `continue_from` may name, seconds."
    )
    max_prompt_length: int = Field(description="Longest prompt, characters.")
    max_seed: int
    auth_required: bool = Field(description="Whether mutating routes need a bearer key.")
    max_body_bytes: int


class DatabaseHealth(BaseModel):
    ok: bool
    backend: str | None = Field(description="`sqlite` or `postgresql`.")
    error: str | None = None


class GpuPublic(BaseModel):
    index: int
    name: str
    memory_total_mb: float
    memory_used_mb: float


class EngineHealth(BaseModel):
    ok: bool
    device: str | None = Field(description="Where MusicGen runs: `cpu`, `cuda`...")
    default_model: str
    default_model_available: bool
    gpus: list[GpuPublic]
    error: str | None = None


class QueueHealth(BaseModel):
    depth: int | None = Field(description="Jobs waiting for a worker.")
    processing: int | None


class WorkersHealth(BaseModel):
    configured: int = Field(description="Worker threads this process runs.")
    running: bool


class HealthPublic(BaseModel):
    """How the service is; the status code is 503 when the database cannot be reached."""

    status: Literal["ok", "degraded", "unavailable"]
    version: str
    database: DatabaseHealth
    engine: EngineHealth
    queue: QueueHealth
    workers: WorkersHealth
