"""``/generations``: submit, follow, list, download and delete generations."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import FileResponse
from pydantic import BaseModel

from dgx_music.api import service
from dgx_music.api.deps import EngineDep, GenerationId, ManagerDep, SettingsDep, require_api_key
from dgx_music.api.schemas import (
    AUDIO_MEDIA_TYPE,
    ErrorPublic,
    GenerationCreate,
    GenerationPublic,
    GenerationsPublic,
    WaveformPublic,
    generation_url,
)
from dgx_music.jobs.records import JobStatus

router = APIRouter(prefix="/generations", tags=["generations"])

#: Largest page of ``GET /generations``.
MAX_PAGE_SIZE = 100
#: Largest offset accepted (both databases take it as a 32-bit value without trouble).
MAX_OFFSET = 2**31 - 1


def json_response(
    body: BaseModel, status_code: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """``body`` serialised once, by pydantic, straight to JSON bytes.

    Returning a model instead makes FastAPI dump it to a dict, validate that dict against the
    ``response_model`` again and encode it with the json module: three passes over a body that
    was validated when it was built. ``response_model`` stays on the routes for the schema.
    """
    return Response(
        body.model_dump_json(),
        status_code=status_code,
        media_type="application/json",
        headers=headers,
    )


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    descriptions = {
        401: "The server needs an API key and the request has none, or a wrong one.",
        404: "No generation with this id.",
        409: "The generation is not in a state that allows this.",
        413: "The request body is too large.",
        422: "A field is invalid; `detail` names each one.",
        503: "The database cannot be reached.",
    }
    return {
        status: {"model": ErrorPublic, "description": descriptions[status]} for status in statuses
    }


@router.post(
    "",
    status_code=202,
    response_model=GenerationPublic,
    dependencies=[Depends(require_api_key)],
    responses={
        202: {
            "description": "Queued. Follow the `Location` URL until `status` is final.",
            "headers": {
                "Location": {
                    "description": "URL of the new generation.",
                    "schema": {"type": "string"},
                }
            },
        },
        **_errors(401, 413, 422, 503),
    },
)
def create_generation(body: GenerationCreate, manager: ManagerDep, engine: EngineDep) -> Response:
    """Queue a generation; a worker picks it up in submission order."""
    job = service.submit_generation(body, manager=manager, engine=engine)
    return json_response(
        GenerationPublic.from_job(job), 202, headers={"Location": generation_url(job.id)}
    )


@router.get("", response_model=GenerationsPublic, responses=_errors(422, 503))
def list_generations(
    manager: ManagerDep,
    status: Annotated[
        JobStatus | None, Query(description="Only generations in this status.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="Page size.")] = 20,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Generations to skip.")] = 0,
) -> Response:
    """Generations, newest first."""
    jobs, total = manager.list(status=status, limit=limit, offset=offset)
    return json_response(
        GenerationsPublic(
            data=[GenerationPublic.from_job(job) for job in jobs],
            count=total,
            limit=limit,
            offset=offset,
        )
    )


@router.get("/{generation_id}", response_model=GenerationPublic, responses=_errors(404, 422, 503))
def read_generation(generation_id: GenerationId, manager: ManagerDep) -> Response:
    """One generation: status, progress, timings, metadata and error."""
    return json_response(GenerationPublic.from_job(manager.get(str(generation_id))))


@router.delete(
    "/{generation_id}",
    status_code=204,
    dependencies=[Depends(require_api_key)],
    responses={
        200: {"model": GenerationPublic, "description": "It was pending: now cancelled."},
        204: {"description": "It was finished: deleted, with its file."},
        **_errors(401, 404, 409, 422, 503),
    },
)
def delete_generation(generation_id: GenerationId, manager: ManagerDep) -> Response:
    """Cancel a pending generation, or delete a finished one and its file."""
    cancelled = service.delete_generation(manager, str(generation_id))
    if cancelled is None:
        return Response(status_code=204)
    return json_response(GenerationPublic.from_job(cancelled))


@router.get(
    "/{generation_id}/audio",
    response_class=FileResponse,
    dependencies=[Depends(require_api_key)],
    responses={
        200: {
            "description": "The WAV file. Send `Range: bytes=a-b` for part of it (206) and "
            "`If-None-Match` with its ETag (its SHA-256) to revalidate (304).",
            "content": {AUDIO_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}},
            "headers": {
                "ETag": {"description": "The file's SHA-256, quoted.", "schema": {"type": "string"}}
            },
        },
        206: {
            "description": "The requested byte range.",
            "content": {AUDIO_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}},
        },
        304: {"description": "The client's copy (If-None-Match) is current."},
        416: {"description": "The range lies outside the file."},
        **_errors(401, 404, 409, 422, 503),
    },
)
def read_generation_audio(
    generation_id: GenerationId,
    request: Request,
    manager: ManagerDep,
    settings: SettingsDep,
    download: Annotated[
        bool, Query(description="Ask the browser to save the file instead of playing it.")
    ] = False,
) -> Response:
    """The audio of a completed generation, as audio/wav."""
    job = manager.get(str(generation_id))
    path = service.audio_path(job, settings.output_dir)
    headers = {"Cache-Control": "private, max-age=3600"}
    if job.sha256:
        headers["ETag"] = f'"{job.sha256}"'
        if service.etag_matches(request.headers.get("if-none-match"), headers["ETag"]):
            return Response(status_code=304, headers=headers)
    return FileResponse(
        path,
        media_type=AUDIO_MEDIA_TYPE,
        headers=headers,
        filename=f"dgx-music-{job.id}.wav",
        content_disposition_type="attachment" if download else "inline",
    )


@router.get(
    "/{generation_id}/waveform",
    response_model=WaveformPublic,
    dependencies=[Depends(require_api_key)],
    responses=_errors(401, 404, 409, 422, 503),
)
def read_generation_waveform(
    generation_id: GenerationId,
    manager: ManagerDep,
    settings: SettingsDep,
    points: Annotated[
        int,
        Query(ge=16, le=service.MAX_WAVEFORM_POINTS, description="Columns of the picture."),
    ] = service.DEFAULT_WAVEFORM_POINTS,
) -> WaveformPublic:
    """Peaks of a completed generation's audio, to draw its waveform."""
    job = manager.get(str(generation_id))
    path = service.audio_path(job, settings.output_dir)
    minimum, maximum, duration = service.waveform(path, job.sha256 or "", points)
    return WaveformPublic(
        id=job.id, points=points, duration=duration, minimum=minimum, maximum=maximum
    )
