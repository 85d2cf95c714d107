"""The job records: :class:`Job`, a snapshot of one ``generations`` row, and :class:`JobOutput`,
what a finished job writes into its row.

Each list of columns is written once, as a dataclass's fields: :data:`JOB_COLUMNS` (what reads
select), :meth:`Job.from_row` and :meth:`Job.from_columns` are derived from :class:`Job`'s fields,
:meth:`JobOutput.column_values` from :class:`JobOutput`'s, and the request's columns from
:data:`REQUEST_FIELDS`. A field whose column has another name is in :data:`COLUMN_NAMES`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Row

from dgx_music.storage.models import FINISHED_STATUSES, Generation, GenerationStatus, Prompt

if TYPE_CHECKING:
    # Imported where used: the request module brings numpy, which listing the history (the
    # CLI's ``jobs``) does not need.
    from dgx_music.generation.request import GenerationRequest

#: The queue's statuses are the generation statuses.
JobStatus = GenerationStatus

#: Fields of :class:`Job` and :class:`JobOutput` stored under another attribute of
#: :class:`~dgx_music.storage.models.Generation` (``metadata`` is reserved by SQLAlchemy).
COLUMN_NAMES = {"metadata": "audio_metadata"}
#: What a job was asked for: the fields of
#: :class:`~dgx_music.generation.request.GenerationRequest` a row keeps (the prompt's text lives
#: in ``prompts``, the rest in ``generations``).
REQUEST_FIELDS = (
    "prompt",
    "duration",
    "model",
    "seed",
    "temperature",
    "top_k",
    "top_p",
    "guidance_scale",
    "continue_from",
)


@dataclass(frozen=True, kw_only=True)
class Job:
    """A snapshot of one ``generations`` row. Times are UTC-aware; ``file_path`` is relative to
    the output directory; ``metadata`` is what the analysis measured."""

    id: str
    prompt: str
    status: JobStatus
    model: str
    device: str | None = None
    #: Requested length, seconds.
    duration: float
    seed: int | None
    temperature: float
    top_k: int
    top_p: float
    guidance_scale: float
    #: The generation this one continues, if any.
    continue_from: str | None = None
    attempts: int = 0
    worker_id: str | None = None
    lease_expires_at: datetime | None = None
    #: Fraction done, 0..1.
    progress: float = 0.0
    created_at: datetime
    started_at: datetime | None = None
    completed_at: datetime | None = None
    #: Model time, seconds.
    generation_seconds: float | None = None
    file_path: str | None = None
    #: Bytes.
    file_size: int | None = None
    sha256: str | None = None
    #: Hz.
    sample_rate: int | None = None
    channels: int | None = None
    #: Length of the written file, seconds.
    actual_duration: float | None = None
    #: Integrated loudness, LUFS.
    lufs: float | None = None
    #: dBTP.
    true_peak: float | None = None
    #: BPM.
    tempo_bpm: float | None = None
    key: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @classmethod
    def from_row(cls, row: Generation, prompt: str | None = None) -> Job:
        """The snapshot of ``row``; ``prompt`` saves loading the prompt when it is known."""
        values = {name: getattr(row, COLUMN_NAMES.get(name, name)) for name in _ROW_FIELDS}
        values["prompt"] = prompt if prompt is not None else row.prompt.text
        return cls._checked(values)

    @classmethod
    def from_columns(cls, row: Row[Any]) -> Job:
        """The snapshot of a row selected with :data:`JOB_COLUMNS` (labelled as the fields)."""
        return cls._checked(dict(row._mapping))

    @classmethod
    def _checked(cls, values: dict[str, Any]) -> Job:
        values["status"] = GenerationStatus(values["status"])
        values["metadata"] = dict(values["metadata"] or {})
        return cls(**values)

    def evolve(self, **changes: Any) -> Job:
        """A copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED_STATUSES

    def request(self) -> GenerationRequest:
        """The generation request this job was submitted with, validated again.

        Raises
        ------
        ValidationError
            The settings changed since submission and no longer allow it (a shorter
            ``max_duration``, for example).
        """
        from dgx_music.generation.request import GenerationRequest

        return GenerationRequest(**{name: getattr(self, name) for name in REQUEST_FIELDS})


#: Job fields read from a ``generations`` row (the prompt's text comes from ``prompts``).
_ROW_FIELDS = tuple(f.name for f in dataclasses.fields(Job) if f.name != "prompt")

#: The columns of a job snapshot, labelled with :class:`Job`'s field names and in its order.
#: Reads select these with Core and build :class:`Job` straight from the rows: the ORM's identity
#: map and relationship loading cost more than the query for a one-row lookup.
JOB_COLUMNS = tuple(
    (
        Prompt.text if f.name == "prompt" else getattr(Generation, COLUMN_NAMES.get(f.name, f.name))
    ).label(f.name)
    for f in dataclasses.fields(Job)
)


def request_columns(request: GenerationRequest) -> dict[str, Any]:
    """The ``generations`` values of ``request`` (all but the prompt, which is a foreign key)."""
    return {name: getattr(request, name) for name in REQUEST_FIELDS if name != "prompt"}


def finite_or_none(value: float | None) -> float | None:
    """``value`` as a float, or None when it is missing or not finite (SQL and JSON have no NaN
    that both backends accept)."""
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None, through dicts and lists: JSON has
    no NaN or infinity (PostgreSQL rejects them)."""
    if isinstance(value, float):
        return finite_or_none(value)
    if isinstance(value, dict):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    return value


@dataclass(frozen=True, kw_only=True)
class JobOutput:
    """What a finished generation produced: the facts a completed row records."""

    #: Relative to the output directory.
    file_path: str
    #: Bytes.
    file_size: int
    sha256: str
    #: Hz.
    sample_rate: int
    channels: int
    #: Length of the written file, seconds.
    actual_duration: float
    device: str
    seed: int
    #: Model time, seconds.
    generation_seconds: float
    #: Integrated loudness, LUFS; None for silence or clips shorter than 400 ms.
    lufs: float | None = None
    #: dBTP.
    true_peak: float | None = None
    #: BPM.
    tempo_bpm: float | None = None
    key: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def column_values(self) -> dict[str, Any]:
        """The ``generations`` attributes this output sets, JSON- and SQL-safe."""
        values: dict[str, Any] = {}
        for name in (f.name for f in dataclasses.fields(self)):
            value = getattr(self, name)
            if isinstance(value, float):
                value = finite_or_none(value)
            elif isinstance(value, dict):
                value = json_safe(value)
            values[COLUMN_NAMES.get(name, name)] = value
        return values
