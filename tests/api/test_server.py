"""``serve``: the application under uvicorn, on the loopback interface unless told otherwise."""

from __future__ import annotations

from typing import Any

import pytest

from dgx_music.api import server


@pytest.fixture
def uvicorn_calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(
        server.uvicorn, "run", lambda app, **options: calls.append({"app": app, **options})
    )
    return calls


def test_serve_binds_the_loopback_interface_by_default(uvicorn_calls: list[dict[str, Any]]) -> None:
    server.serve()

    [call] = uvicorn_calls
    assert (call["host"], call["port"]) == ("127.0.0.1", 8000)
    pool = call["app"].state.worker_pool
    assert pool is not None and pool.concurrency == 1


def test_serve_takes_host_port_and_workers(uvicorn_calls: list[dict[str, Any]]) -> None:
    server.serve("0.0.0.0", 9123, workers=3)
    server.serve(port=9124, workers=0)

    first, second = uvicorn_calls
    assert (first["host"], first["port"]) == ("0.0.0.0", 9123)
    assert first["app"].state.worker_pool.concurrency == 3
    assert second["port"] == 9124
    assert second["app"].state.worker_pool is None


def test_serve_reads_host_and_port_from_the_environment(
    uvicorn_calls: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DGX_MUSIC_HOST", "::1")
    monkeypatch.setenv("DGX_MUSIC_PORT", "8765")

    server.serve()

    assert (uvicorn_calls[0]["host"], uvicorn_calls[0]["port"]) == ("::1", 8765)
