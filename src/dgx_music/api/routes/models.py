"""``/models``: the models a request may name."""

from __future__ import annotations

from fastapi import APIRouter

from dgx_music.api import status
from dgx_music.api.deps import EngineDep, SettingsDep
from dgx_music.api.schemas import ModelsPublic

router = APIRouter(prefix="/models", tags=["service"])


@router.get("", response_model=ModelsPublic)
def list_models(engine: EngineDep, settings: SettingsDep) -> ModelsPublic:
    """Every model and whether its weights are installed on this server."""
    return status.list_models(engine, settings)
