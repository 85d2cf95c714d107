"""The work behind the routes, as plain functions the handlers call.

Nothing here knows about HTTP: functions take the queue, the engine and the settings, return
values or raise the project's errors, and :mod:`dgx_music.api.errors` maps those to statuses.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path

import numpy as np
import soundfile

from dgx_music.api.schemas import (
    GenerationCreate,
)
from dgx_music.errors import (
    JobStateError,
    NotFoundError,
    UnknownModelError,
    ValidationError,
)
from dgx_music.generation.checkpoints import (
    cached_checkpoint_dir,
    download_hint,
    local_checkpoint_dir,
)
from dgx_music.generation.engine import (
    SYNTH_MODEL,
    TINY_MODEL,
    TINY_MODEL_DIR,
    MusicEngine,
    is_musicgen_checkpoint,
    model_choices,
)
from dgx_music.generation.twins import is_twin
from dgx_music.jobs.queue import JobManager
from dgx_music.jobs.records import Job, JobStatus
from dgx_music.jobs.sources import continuable

logger = logging.getLogger(__name__)

#: Waveform columns returned when a client asks for none, and the most it may ask for.
DEFAULT_WAVEFORM_POINTS = 800
MAX_WAVEFORM_POINTS = 4000
#: Decimal places of waveform values (1e-4 of full scale is below one pixel).
WAVEFORM_DECIMALS = 4


def submit_generation(body: GenerationCreate, *, manager: JobManager, engine: MusicEngine) -> Job:
    """Validate ``body`` and queue it.

    Raises
    ------
    ValidationError
        A value is out of range, the model is unknown or not installed on this server, or
        ``continue_from`` names no completed generation.
    """
    request = body.to_request()
    ensure_model_installed(request.model, engine)
    if request.continue_from is not None:
        continuable(manager, request.continue_from)
    return manager.submit(request)


def ensure_model_installed(name: str, engine: MusicEngine) -> None:
    """Refuse a model the API does not serve: unknown names, and checkpoints not on disk.

    Only registry names are accepted over HTTP; a local checkpoint directory is a CLI feature,
    since a path from a client must never make the server look around its file system. Only
    the named model is looked for (every submission used to scan the disk for all eight).
    """
    choices = model_choices()
    if name not in choices:
        raise UnknownModelError(name, choices)
    if not model_installed(name, engine.settings.model_dir):
        raise ValidationError(
            "model",
            f"{name} is not installed on this server (its weights are not on disk, and "
            f"dgx-music never downloads them); an administrator can {download_hint(name)}",
            limit="a model listed as available by GET /api/v1/models",
        )


def model_installed(name: str, model_dir: Path | None) -> bool:
    """Whether the registry model ``name`` can run offline now: what
    :meth:`MusicEngine.available_models` reports for it, reading only that model's files."""
    if name == SYNTH_MODEL:
        return True
    if name == TINY_MODEL:
        return is_musicgen_checkpoint(TINY_MODEL_DIR)
    if is_twin(name):
        return True  # built from its shipped configuration
    location = local_checkpoint_dir(name, model_dir)
    return location is not None or cached_checkpoint_dir(name) is not None


def delete_generation(manager: JobManager, generation_id: str) -> Job | None:
    """Cancel a pending generation (returned, kept as cancelled) or delete a finished one with
    its file (``None``).

    Raises
    ------
    JobStateError
        A worker is processing it.
    NotFoundError
        No such generation.
    """
    manager.delete(generation_id)
    try:
        return manager.get(generation_id)
    except NotFoundError:
        return None


def audio_path(job: Job, output_dir: Path) -> Path:
    """The WAV file of a completed job, which must lie inside ``output_dir``.

    Raises
    ------
    JobStateError
        The job is not completed.
    NotFoundError
        The file is missing, or the row points outside the outputs directory.
    """
    if job.status is not JobStatus.COMPLETED or job.file_path is None:
        raise JobStateError(
            f"generation {job.id} is {job.status}; its audio exists once it is completed"
        )
    root = output_dir.resolve()
    path = (root / job.file_path).resolve()
    if not path.is_relative_to(root) or path.name != f"{job.id}.wav":
        logger.error(
            "generation %s points outside the outputs directory: %s",
            job.id,
            job.file_path,
            extra={"action": "audio", "job_id": job.id},
        )
        raise NotFoundError(f"generation {job.id} has no file in the outputs directory")
    if not path.is_file():
        raise NotFoundError(
            f"the file of generation {job.id} is missing from the outputs directory; "
            "`dgx-music db check` lists such problems and `dgx-music db cleanup` repairs them"
        )
    return path


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """Whether an ``If-None-Match`` header names ``etag`` (weak comparison, RFC 9110 13.1.2)."""
    if not if_none_match:
        return False
    tags = [tag.strip() for tag in if_none_match.split(",")]
    return any(tag == "*" or tag.removeprefix("W/") == etag for tag in tags)


def waveform(path: Path, sha256: str, points: int) -> tuple[list[float], list[float], float]:
    """The lowest and highest sample of the mono mix in ``points`` equal columns, and the
    track's length, seconds. Cached by file content."""
    return _waveform(str(path), sha256, points)


@lru_cache(maxsize=64)
def _waveform(path: str, sha256: str, points: int) -> tuple[list[float], list[float], float]:
    try:
        audio, sample_rate = soundfile.read(path, dtype="float32", always_2d=True)
    except (OSError, RuntimeError, soundfile.LibsndfileError) as exc:
        raise NotFoundError(f"cannot read the audio file: {exc}") from exc
    mono = audio.mean(axis=1, dtype=np.float64)
    duration = len(mono) / sample_rate if sample_rate else 0.0
    if len(mono) == 0:
        zeros = [0.0] * points
        return zeros, list(zeros), duration
    per_column = -(-len(mono) // points)
    padded = np.pad(mono, (0, per_column * points - len(mono)), mode="edge")
    columns = padded.reshape(points, per_column)
    minimum = np.round(columns.min(axis=1), WAVEFORM_DECIMALS)
    maximum = np.round(columns.max(axis=1), WAVEFORM_DECIMALS)
    return minimum.tolist(), maximum.tolist(), duration
