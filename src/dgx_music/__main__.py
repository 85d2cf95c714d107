"""The ``dgx-music`` console script (also ``python -m dgx_music``).

A queue command (``submit``, ``jobs``, ``db ...``) lives about half a second, and most of that is
importing SQLAlchemy, pydantic, typer and rich: a few hundred thousand objects, created in a
burst, that all live until the process exits. CPython's cyclic collector runs every 700 new
objects and keeps walking that growing heap while finding nothing to free; at exit it walks it
once more. On the 2-core runner that was about 0.3 s of an 0.8 s ``dgx-music jobs``.

So :func:`main` imports the CLI and the modules most commands need with the collector paused,
then freezes what exists (``gc.freeze``: later collections and the one at exit skip it) and turns
the collector back on before any command runs. Commands that import more later (``worker``,
``serve``, ``generate`` load torch) do so with the collector on, as before; a long-running
process is never left without it.
"""

from __future__ import annotations

import gc
import importlib

#: Imported before the command runs, with the collector paused: what the queue and history
#: commands use, and what the worker and server import on their way to torch anyway.
STARTUP_MODULES = (
    "dgx_music.cli",
    "dgx_music.jobs.queue",
    "dgx_music.storage.database",
    "dgx_music.generation.engine",
)


def import_for_startup(modules: tuple[str, ...] = STARTUP_MODULES) -> None:
    """Import ``modules`` with the cyclic collector paused, then freeze them and resume it."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        for name in modules:
            importlib.import_module(name)
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()


def main() -> None:
    """Run the ``dgx-music`` command line."""
    import_for_startup()
    from dgx_music.cli import app

    app(prog_name="dgx-music")


if __name__ == "__main__":
    main()
