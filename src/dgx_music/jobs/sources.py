"""The generation a continuation extends: checked when the job is queued, read when it runs.

The API's ``continue_from`` names a generation by id (no uploads through the API): it must exist,
be completed and still have its file. The API checks that at submission, so nothing is queued
for a bad id; the worker reads the file when the job runs and checks it again, since the source
may have been deleted in between (the job then fails, saying so).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from dgx_music.errors import NotFoundError, ValidationError
from dgx_music.jobs.queue import JobManager
from dgx_music.jobs.records import Job
from dgx_music.storage.models import GenerationStatus

if TYPE_CHECKING:
    # The audio side (numpy, soundfile) loads only when a track is read: checking an id at
    # submission (``dgx-music submit``, the API) must stay light.
    from dgx_music.generation.continuation import AudioPrompt

#: The request field these errors name.
FIELD = "continue_from"
_LIMIT = "the id of a completed generation"


def continuable(manager: JobManager, generation_id: str) -> Job:
    """The completed generation ``generation_id``, whose track may be continued.

    Raises
    ------
    ValidationError
        No such generation, or it is not completed (pending, processing, failed, cancelled).
    """
    try:
        source = manager.get(generation_id)
    except NotFoundError as exc:
        raise ValidationError(
            FIELD, f"there is no generation {generation_id}", limit=_LIMIT
        ) from exc
    if source.status is not GenerationStatus.COMPLETED or source.file_path is None:
        raise ValidationError(
            FIELD,
            f"generation {generation_id} is {source.status.value}; only a completed "
            "generation can be continued",
            limit=_LIMIT,
        )
    return source


def load_source(manager: JobManager, output_dir: Path, generation_id: str) -> AudioPrompt:
    """The track of generation ``generation_id``, checked, to continue.

    Raises
    ------
    ValidationError
        As :func:`continuable`; or its file is gone or unusable.
    """
    from dgx_music.generation.continuation import AudioPrompt, load_audio_prompt

    source = continuable(manager, generation_id)
    assert source.file_path is not None
    prompt = load_audio_prompt(output_dir / source.file_path, field=FIELD)
    return AudioPrompt(audio=prompt.audio, source={"generation_id": generation_id})
