"""Helpers shared by the API, browser and load tests."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

API = "/api/v1"
#: Statuses a job never leaves.
FINAL = {"completed", "failed", "cancelled"}
#: A synth request that finishes in well under a second.
SYNTH_BODY: dict[str, Any] = {
    "prompt": "test groove, 120 bpm in A minor",
    "duration": 1.0,
    "model": "synth",
    "seed": 7,
}
#: Longest a test waits for a synth job, seconds (generous: a loaded CI box).
JOB_TIMEOUT = 60.0


def synth_body(**changes: Any) -> dict[str, Any]:
    return {**SYNTH_BODY, **changes}


def wait_for_job(
    client: TestClient | httpx.Client, job_id: str, timeout: float = JOB_TIMEOUT
) -> dict[str, Any]:
    """Poll a generation until its status is final; fail the test after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        response = client.get(f"{API}/generations/{job_id}")
        assert response.status_code == 200, response.text
        job = response.json()
        if job["status"] in FINAL:
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} still {job['status']} after {timeout} s")
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def live_server(app: FastAPI, *, timeout: float = 30.0) -> Iterator[str]:
    """Serve ``app`` with uvicorn on 127.0.0.1 in a thread; yield its base URL."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=free_port(), log_level="warning", lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{config.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=60)
