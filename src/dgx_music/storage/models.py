"""The generation history as SQLAlchemy 2.0 typed ORM models: ``prompts`` and ``generations``.

Only the Alembic migrations in :mod:`dgx_music.storage.migrations` create this schema; a test
checks that they produce exactly these tables, columns, constraints and indexes. Timestamps are
UTC, stored as ``timestamptz`` on PostgreSQL and as naive UTC text on SQLite, and always come
back timezone-aware.
"""

from __future__ import annotations

import enum
import hashlib
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    Dialect,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Text,
    TypeDecorator,
    Uuid,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

#: Constraint and index names are fixed so migrations and the ORM agree on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: Longest model name or checkpoint directory path stored, characters.
MODEL_NAME_LENGTH = 1024
#: Longest worker id stored, characters.
WORKER_ID_LENGTH = 255
#: Longest relative output path stored, characters.
FILE_PATH_LENGTH = 512


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def prompt_digest(text: str) -> str:
    """SHA-256 of a prompt's UTF-8 text, hex: the key that keeps prompt texts unique."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend.

    SQLite has no time zones: values are stored as naive UTC, so string comparison in SQL
    (lease expiry) orders them correctly, and are returned with ``tzinfo=UTC``.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: dgx-music stores UTC-aware times only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class GenerationStatus(enum.StrEnum):
    """Where a generation is in its life. Legal moves are in :data:`TRANSITIONS`."""

    #: Queued, waiting for a worker to claim it.
    PENDING = "pending"
    #: Claimed by a worker that holds a lease on it.
    PROCESSING = "processing"
    #: Finished: its WAV file is on disk and described by the row.
    COMPLETED = "completed"
    #: Gave up; ``error`` says why. No file belongs to it.
    FAILED = "failed"
    #: Withdrawn by a user before a worker claimed it.
    CANCELLED = "cancelled"


#: Which status each status may move to. A processing job goes back to pending when its lease
#: expires or its worker releases it on shutdown.
TRANSITIONS: dict[GenerationStatus, frozenset[GenerationStatus]] = {
    GenerationStatus.PENDING: frozenset({GenerationStatus.PROCESSING, GenerationStatus.CANCELLED}),
    GenerationStatus.PROCESSING: frozenset(
        {GenerationStatus.COMPLETED, GenerationStatus.FAILED, GenerationStatus.PENDING}
    ),
    GenerationStatus.COMPLETED: frozenset({GenerationStatus.FAILED}),
    GenerationStatus.FAILED: frozenset(),
    GenerationStatus.CANCELLED: frozenset(),
}

#: Statuses a job never leaves by itself.
FINISHED_STATUSES = frozenset(
    {GenerationStatus.COMPLETED, GenerationStatus.FAILED, GenerationStatus.CANCELLED}
)


def _status_values(enum_class: type[GenerationStatus]) -> list[str]:
    return [member.value for member in enum_class]


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
    }


class Prompt(Base):
    """A distinct prompt text and how often it has been used.

    The text is unique through ``text_sha256``: a PostgreSQL b-tree index entry cannot hold a
    1000-character prompt of 4-byte characters, its digest always fits.
    """

    __tablename__ = "prompts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    text: Mapped[str] = mapped_column(Text)
    text_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    use_count: Mapped[int] = mapped_column(Integer, default=1)
    first_used_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime] = mapped_column(default=utcnow)

    generations: Mapped[list[Generation]] = relationship(back_populates="prompt")

    __table_args__ = (CheckConstraint("use_count >= 0", name="use_count_not_negative"),)


class Generation(Base):
    """One generation: its request, its place in the queue, and the file it produced."""

    __tablename__ = "generations"

    id: Mapped[str] = mapped_column(Uuid(as_uuid=False), primary_key=True)
    prompt_id: Mapped[int] = mapped_column(
        ForeignKey("prompts.id", ondelete="RESTRICT"), index=True
    )

    # The request.
    model: Mapped[str] = mapped_column(String(MODEL_NAME_LENGTH))
    #: Device the model ran on; known once a worker has run it.
    device: Mapped[str | None] = mapped_column(String(32))
    #: Requested length, seconds.
    duration: Mapped[float] = mapped_column(Float)
    seed: Mapped[int | None] = mapped_column(BigInteger)
    temperature: Mapped[float] = mapped_column(Float)
    top_k: Mapped[int] = mapped_column(Integer)
    top_p: Mapped[float] = mapped_column(Float)
    guidance_scale: Mapped[float] = mapped_column(Float)
    #: The generation whose track this one continues. No foreign key: the history keeps what a
    #: track continued after its source is deleted (the metadata holds the same fact).
    continue_from: Mapped[str | None] = mapped_column(Uuid(as_uuid=False))

    # The queue.
    status: Mapped[GenerationStatus] = mapped_column(
        Enum(
            GenerationStatus,
            native_enum=False,
            create_constraint=False,
            length=16,
            values_callable=_status_values,
            validate_strings=True,
        ),
        default=GenerationStatus.PENDING,
    )
    #: How many times a worker has claimed it.
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    worker_id: Mapped[str | None] = mapped_column(String(WORKER_ID_LENGTH))
    lease_expires_at: Mapped[datetime | None] = mapped_column()
    #: Fraction done, 0..1.
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column()
    completed_at: Mapped[datetime | None] = mapped_column()
    #: Model time, seconds.
    generation_seconds: Mapped[float | None] = mapped_column(Float)

    # The file, relative to the outputs directory.
    file_path: Mapped[str | None] = mapped_column(String(FILE_PATH_LENGTH), unique=True)
    #: Bytes.
    file_size: Mapped[int | None] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(String(64))
    #: Hz.
    sample_rate: Mapped[int | None] = mapped_column(Integer)
    channels: Mapped[int | None] = mapped_column(Integer)
    #: Length of the written file, seconds.
    actual_duration: Mapped[float | None] = mapped_column(Float)
    #: Integrated loudness, LUFS (ITU-R BS.1770-4).
    lufs: Mapped[float | None] = mapped_column(Float)
    #: True peak, dBTP.
    true_peak: Mapped[float | None] = mapped_column(Float)
    #: BPM.
    tempo_bpm: Mapped[float | None] = mapped_column(Float)
    key: Mapped[str | None] = mapped_column(String(16))
    #: Everything :func:`dgx_music.audio.metadata.analyze` measured, and the export's flags.
    audio_metadata: Mapped[dict[str, Any] | None] = mapped_column("metadata")
    error: Mapped[str | None] = mapped_column(Text)

    prompt: Mapped[Prompt] = relationship(back_populates="generations", lazy="joined")

    __table_args__ = (
        CheckConstraint("duration > 0", name="duration_positive"),
        CheckConstraint(
            "status IN ({})".format(", ".join(f"'{status.value}'" for status in GenerationStatus)),
            name="status_valid",
        ),
        CheckConstraint("attempts >= 0", name="attempts_not_negative"),
        CheckConstraint("progress >= 0 AND progress <= 1", name="progress_fraction"),
        # The claim (oldest pending first) and listings by status (newest first).
        Index("ix_generations_status_created_at_id", "status", "created_at", "id"),
        # The history, newest first.
        Index("ix_generations_created_at_id", "created_at", "id"),
    )


class GenerationCount(Base):
    """How many generations are in one status, kept by database triggers (migration 0002).

    Every insert, status change, delete and truncate of ``generations`` updates these rows in
    the same transaction, so ``sum(total)`` over a status equals ``count(*)`` of its rows at every
    snapshot. PostgreSQL splits a status over several ``shard`` rows (one per group of server
    backends) so concurrent writers do not wait on one row; only the sum means anything.
    Nothing but the triggers writes here.
    """

    __tablename__ = "generation_counts"

    status: Mapped[str] = mapped_column(String(16), primary_key=True)
    shard: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    #: Generations of this status counted on this shard; may be negative on one shard.
    total: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (
        CheckConstraint(
            "status IN ({})".format(", ".join(f"'{status.value}'" for status in GenerationStatus)),
            name="status_valid",
        ),
        CheckConstraint("shard >= 0", name="shard_not_negative"),
    )
