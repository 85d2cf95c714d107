"""One router per resource; :mod:`dgx_music.api.app` wires them together."""
