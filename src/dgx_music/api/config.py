"""Settings of the HTTP service, read from ``DGX_MUSIC_*`` environment variables.

They live beside the API rather than in :mod:`dgx_music.config` because only ``serve`` reads
them; generation, storage and queue settings stay in :class:`dgx_music.config.Settings`.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

#: Largest request body accepted, bytes (a prompt of 1000 four-byte characters is 4 KB).
DEFAULT_MAX_BODY_BYTES = 64 * 1024


class ApiSettings(BaseSettings):
    """HTTP service configuration. Every field can be set as ``DGX_MUSIC_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="DGX_MUSIC_", extra="ignore")

    #: When set, mutating routes and audio downloads need ``Authorization: Bearer <key>``.
    api_key: SecretStr | None = None
    #: Origins allowed to call the API from other web pages; empty turns CORS off.
    #: Comma-separated in the environment: ``DGX_MUSIC_CORS_ORIGINS=http://a:3000,http://b``.
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    #: Largest request body, bytes; larger ones get 413.
    max_body_bytes: int = Field(default=DEFAULT_MAX_BODY_BYTES, ge=1024)
    #: Address ``dgx-music serve`` binds; the loopback interface unless told otherwise.
    host: str = "127.0.0.1"
    #: TCP port of ``dgx-music serve``.
    port: int = Field(default=8000, ge=0, le=65535)

    @field_validator("api_key", mode="before")
    @classmethod
    def _blank_key_is_none(cls, value: object) -> object:
        # An exported but empty DGX_MUSIC_API_KEY means "no key", not "the empty key".
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @property
    def auth_required(self) -> bool:
        return self.api_key is not None
