"""Settings: the one place for defaults, read from ``DGX_MUSIC_*`` environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: Sample rate of every file dgx-music writes, Hz (MusicGen's EnCodec rate).
OUTPUT_SAMPLE_RATE = 32_000
#: Channels of every file dgx-music writes.
OUTPUT_CHANNELS = 2


class Settings(BaseSettings):
    """Service configuration. Every field can be set as ``DGX_MUSIC_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="DGX_MUSIC_", extra="ignore")

    #: Where the default SQLite database lives.
    data_dir: Path = Path("data")
    #: Root of the generated WAV files (``YYYY/MM/<id>.wav`` below it).
    output_dir: Path = Path("outputs")
    #: SQLAlchemy URL; empty means ``sqlite:///<data_dir>/dgx_music.db``.
    database_url: str = ""
    #: Run ``alembic upgrade head`` when the service, worker or CLI opens the database.
    auto_migrate: bool = True

    #: Model used when a request names none.
    default_model: str = "facebook/musicgen-small"
    #: ``auto`` uses CUDA when present and falls back to the CPU with a warning.
    device: Literal["auto", "cuda", "cpu"] = "auto"
    #: Retry on the CPU when the GPU runs out of memory.
    cpu_fallback: bool = True
    #: torch intra-op threads on the CPU; 0 leaves torch's default.
    torch_threads: int = Field(default=0, ge=0)
    #: Free heap kept mapped for the next audio buffer, MiB (:mod:`dgx_music.memory`); 0 leaves
    #: glibc's defaults, which hand large buffers back at once and fault them in again.
    malloc_keep_mb: int = Field(default=256, ge=0, le=1024)
    #: Directory searched for ``facebook/musicgen-*`` checkpoints before the Hugging Face cache.
    model_dir: Path | None = None

    #: Longest clip a request may ask for, seconds. MusicGen makes a track past its 30 s window
    #: in windows (:mod:`dgx_music.generation.windows`).
    max_duration: float = Field(default=300.0, gt=0, le=300)
    #: Seconds of tokens that prompt each window after the first of a track longer than 30 s.
    #: 12 s, as audiocraft's default ``extend_stride`` of 18 s keeps: four bars at 80 BPM, enough
    #: for the model to hear the groove and the harmony; more leaves each window less to add.
    context_seconds: float = Field(default=12.0, ge=1, le=25)
    #: Longest prompt, characters.
    max_prompt_length: int = Field(default=1000, ge=1)

    #: Integrated loudness target, LUFS (ITU-R BS.1770-4).
    target_lufs: float = Field(default=-16.0, le=0)
    #: Ceiling for the true peak, dBTP.
    true_peak_dbtp: float = Field(default=-1.0, le=0)
    #: Ceiling for the sample peak, linear full scale.
    sample_peak: float = Field(default=0.99, gt=0, le=1)

    #: A claimed job is re-queued when its worker has not renewed the lease for this long, s.
    lease_seconds: float = Field(default=60.0, gt=0)
    #: How often a busy worker renews its lease and reports progress, s.
    heartbeat_seconds: float = Field(default=10.0, gt=0)
    #: Claims a job gets before an expired lease fails it for good.
    max_attempts: int = Field(default=3, ge=1)
    #: How long an idle worker waits before looking for work again, s.
    poll_seconds: float = Field(default=0.5, gt=0)
    #: Worker threads started by ``dgx-music worker`` and ``dgx-music serve``.
    worker_concurrency: int = Field(default=1, ge=0)
    #: Most pending jobs of one MusicGen model a worker claims and generates as one batch
    #: (0: the device's measured default, :data:`dgx_music.generation.engine.DEFAULT_BATCH_SIZE`).
    batch_size: int = Field(default=0, ge=0, le=64)

    @field_validator("database_url")
    @classmethod
    def _normalise_url(cls, value: str) -> str:
        # Accept the URLs people paste from other tools and pick the psycopg 3 driver.
        value = value.strip()
        if value.startswith("postgres://"):
            value = "postgresql://" + value[len("postgres://") :]
        if value.startswith("postgresql://"):
            value = "postgresql+psycopg://" + value[len("postgresql://") :]
        if value and not value.startswith(("sqlite", "postgresql+psycopg://")):
            raise ValueError("database_url must be a sqlite:/// or postgresql:// URL")
        return value

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'dgx_music.db'}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
