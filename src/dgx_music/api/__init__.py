"""The REST API (``/api/v1``) and the web page (``/``): :func:`create_app` builds them."""

from dgx_music.api.app import create_app

__all__ = ["create_app"]
