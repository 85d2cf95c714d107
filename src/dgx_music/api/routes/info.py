"""``/info``: limits and facts a client needs before it submits."""

from __future__ import annotations

from fastapi import APIRouter

from dgx_music.api import status
from dgx_music.api.deps import ApiSettingsDep, SettingsDep
from dgx_music.api.schemas import InfoPublic

router = APIRouter(prefix="/info", tags=["service"])


@router.get("", response_model=InfoPublic)
def read_info(settings: SettingsDep, api_settings: ApiSettingsDep) -> InfoPublic:
    """Version, request limits, the default model and whether an API key is needed."""
    return status.service_info(settings, api_settings)
