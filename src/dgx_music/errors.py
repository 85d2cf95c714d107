"""The error classes every layer raises.

Each class docstring is its default message. The API maps them to HTTP status codes and the CLI
maps them to exit codes (2 for invalid input, 1 for everything else); nothing else does.
"""

from __future__ import annotations


class DgxMusicError(Exception):
    """dgx-music failed."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())

    @property
    def message(self) -> str:
        return str(self)


class InvalidInputError(DgxMusicError):
    """The input is not valid."""

    #: HTTP status code the API answers with.
    http_status = 422


class ValidationError(InvalidInputError):
    """A request field is out of its allowed range.

    ``field`` names the offending field and ``limit`` states the rule it broke, so the API can
    report field-level messages and the CLI can say which option to fix.
    """

    def __init__(self, field: str, message: str, *, limit: str | None = None) -> None:
        self.field = field
        self.limit = limit
        super().__init__(f"{field}: {message}")


class UnknownModelError(ValidationError):
    """The model name is neither a known checkpoint, a local directory nor a built-in model."""

    def __init__(self, name: str, choices: list[str]) -> None:
        self.choices = choices
        super().__init__(
            "model",
            f"unknown model {name!r}; choose one of: {', '.join(choices)}, "
            "or a local directory holding a transformers MusicGen checkpoint",
            limit="one of " + ", ".join(choices),
        )


class ModelLoadError(DgxMusicError):
    """The model could not be loaded."""


class GenerationError(DgxMusicError):
    """Audio generation failed."""


class GpuOutOfMemoryError(GenerationError):
    """The GPU ran out of memory and falling back to the CPU is not allowed."""


class AudioError(DgxMusicError):
    """The audio could not be processed."""


class InvalidAudioError(AudioError, InvalidInputError):
    """The audio array holds NaN or infinite values, or has an unusable shape."""


class ExportError(AudioError):
    """The WAV file could not be written.

    ``path`` is the file that was being written and ``cause`` a short reason (``disk full``,
    ``permission denied``, ``directory missing``).
    """

    def __init__(self, path: object, cause: str) -> None:
        self.path = path
        self.cause = cause
        super().__init__(f"cannot write {path}: {cause}")


class StorageError(DgxMusicError):
    """The generation history could not be read or written."""


class DatabaseUnavailableError(StorageError):
    """The database cannot be reached."""


class NotFoundError(DgxMusicError):
    """No such generation."""

    http_status = 404


class JobStateError(DgxMusicError):
    """The job is not in a state that allows this operation."""

    http_status = 409


class LeaseLostError(JobStateError):
    """This worker no longer holds the job's lease."""
