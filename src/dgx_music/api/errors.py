"""Map every exception to an HTTP status and an :class:`ErrorPublic` body.

This is the only place where the project's errors meet HTTP codes: an error class's
``http_status`` decides (422 invalid input, 404 not found, 409 wrong job state), an unreachable
database is 503, and anything else is a 500 that is logged with its traceback. Request
validation errors (wrong JSON types, malformed JSON, bad query or path values) become 422 with
one :class:`FieldErrorPublic` per problem, the same shape the request validator's errors get.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from dgx_music.api.schemas import ErrorPublic, FieldErrorPublic
from dgx_music.errors import (
    DatabaseUnavailableError,
    DgxMusicError,
    ValidationError,
)

logger = logging.getLogger(__name__)

#: Seconds a client should wait before retrying when the database is unreachable.
RETRY_AFTER_SECONDS = 5

#: Machine-readable codes of the statuses the API answers with.
ERROR_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    416: "range_not_satisfiable",
    422: "validation_error",
    500: "internal_error",
    503: "service_unavailable",
}

#: What pydantic's error types mean, as limits a person can read.
_PYDANTIC_LIMITS = {
    "greater_than": "> {gt}",
    "greater_than_equal": ">= {ge}",
    "less_than": "< {lt}",
    "less_than_equal": "<= {le}",
    "string_too_long": "at most {max_length} characters",
    "string_too_short": "at least {min_length} characters",
}


def error_code(status: int) -> str:
    if status in ERROR_CODES:
        return ERROR_CODES[status]
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "error"


def error_response(
    status: int,
    message: str,
    detail: Sequence[FieldErrorPublic] = (),
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """A JSON :class:`ErrorPublic` response."""
    body = ErrorPublic(error=error_code(status), message=message, detail=list(detail))
    return JSONResponse(body.model_dump(mode="json"), status_code=status, headers=headers)


def _field_name(location: Iterable[Any]) -> str:
    # ("body", "prompt") -> "prompt"; ("query", "limit") -> "limit"; ("body",) -> "body".
    parts = [str(part) for part in location]
    if len(parts) > 1 and parts[0] in {"body", "query", "path", "header", "cookie"}:
        parts = parts[1:]
    return ".".join(parts) or "body"


def field_errors(errors: Iterable[Mapping[str, Any]]) -> list[FieldErrorPublic]:
    """pydantic's error list as field-level errors."""
    result = []
    for error in errors:
        kind = error.get("type", "")
        location = tuple(error.get("loc", ()))
        if kind == "json_invalid":
            # The location is the byte offset of the syntax error, not a field.
            reason = (error.get("ctx") or {}).get("error", "")
            message = f"malformed JSON: {reason}" if reason else "malformed JSON"
            result.append(FieldErrorPublic(field="body", message=message))
            continue
        if kind == "missing" and location == ("body",):
            result.append(FieldErrorPublic(field="body", message="a JSON body is required"))
            continue
        if kind == "extra_forbidden":
            message = "is not a known field"
        elif location == ("body",) and kind in {"model_attributes_type", "dict_type"}:
            message = "must be a JSON object (Content-Type: application/json)"
        elif kind == "value_error":
            # Our validators' messages, without pydantic's "Value error, " prefix.
            message = str((error.get("ctx") or {}).get("error", error.get("msg", "")))
        else:
            message = str(error.get("msg", "is not valid"))
            message = message[:1].lower() + message[1:]
        result.append(
            FieldErrorPublic(field=_field_name(location), message=message, limit=_limit(error))
        )
    return result


def _limit(error: Mapping[str, Any]) -> str | None:
    template = _PYDANTIC_LIMITS.get(error.get("type", ""))
    try:
        return template.format(**(error.get("ctx") or {})) if template else None
    except (KeyError, IndexError):
        return None


def _summary(detail: Sequence[FieldErrorPublic]) -> str:
    return "; ".join(f"{item.field}: {item.message}" for item in detail) or "invalid request"


async def request_validation_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    detail = field_errors(exc.errors())
    return error_response(422, _summary(detail), detail)


async def project_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DgxMusicError)
    if isinstance(exc, ValidationError):
        prefix = f"{exc.field}: "
        message = exc.message.removeprefix(prefix)
        detail = [FieldErrorPublic(field=exc.field, message=message, limit=exc.limit)]
        return error_response(422, exc.message, detail)
    if isinstance(exc, DatabaseUnavailableError):
        logger.error("database unavailable: %s", exc, extra={"action": "api_error"})
        return error_response(
            503,
            f"{exc.message}; retry later",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    status = getattr(exc, "http_status", None)
    if isinstance(status, int):
        return error_response(status, exc.message)
    logger.error(
        "%s %s failed: %s",
        request.method,
        request.url.path,
        exc,
        exc_info=exc,
        extra={"action": "api_error"},
    )
    return error_response(500, exc.message)


async def http_exception_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    cause = exc.__cause__
    if exc.status_code == 400 and isinstance(cause, UnicodeDecodeError | RecursionError):
        # FastAPI answers 400 when the body is not UTF-8 or nests too deeply to parse; for the
        # client that is malformed JSON like any other, which is a 422 here.
        reason = "not UTF-8 text" if isinstance(cause, UnicodeDecodeError) else "nested too deeply"
        detail = [FieldErrorPublic(field="body", message=f"malformed JSON: {reason}")]
        return error_response(422, _summary(detail), detail)
    if exc.status_code == 404 and exc.detail == "Not Found":
        message = f"no such route: {request.method} {request.url.path}"
    elif exc.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}"
    else:
        message = exc.detail if isinstance(exc.detail, str) else error_code(exc.status_code)
    return error_response(exc.status_code, message, headers=exc.headers)


async def unexpected_error_handler(request: Request, exc: Exception) -> JSONResponse:
    logger.error(
        "%s %s failed unexpectedly",
        request.method,
        request.url.path,
        exc_info=exc,
        extra={"action": "api_error"},
    )
    return error_response(
        500, f"internal error ({type(exc).__name__}); the server log has the details"
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, request_validation_handler)
    app.add_exception_handler(DgxMusicError, project_error_handler)
    app.add_exception_handler(StarletteHTTPException, http_exception_handler)
    app.add_exception_handler(Exception, unexpected_error_handler)
