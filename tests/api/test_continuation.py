"""Continuing a generation through the API: ``continue_from`` in the create body."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.api.helpers import API, synth_body, wait_for_job

RATE = 32_000


def test_a_continuation_is_the_source_then_the_new_music(
    client: TestClient, completed: dict[str, Any]
) -> None:
    response = client.post(
        f"{API}/generations", json=synth_body(duration=2.0, continue_from=completed["id"])
    )
    assert response.status_code == 202, response.text
    assert response.json()["continue_from"] == completed["id"]
    job = wait_for_job(client, response.json()["id"])
    assert job["status"] == "completed", job
    source_seconds = completed["audio"]["duration"]
    assert job["audio"]["duration"] == pytest.approx(source_seconds + 2.0, abs=1 / RATE)
    assert job["duration"] == 2.0
    continued = job["metadata"]["details"]["continued_from"]
    assert continued["generation_id"] == completed["id"]
    assert continued["seconds"] == pytest.approx(source_seconds, abs=1 / RATE)
    assert continued["crossfade_seconds"] <= 0.05


@pytest.mark.parametrize(
    ("continue_from", "message"),
    [
        ("00000000-0000-4000-8000-000000000000", "no generation"),
        ("not-an-id", "not a generation id"),
    ],
)
def test_an_unknown_id_is_refused_and_nothing_is_queued(
    idle_client: TestClient, continue_from: str, message: str
) -> None:
    response = idle_client.post(f"{API}/generations", json=synth_body(continue_from=continue_from))
    assert response.status_code == 422, response.text
    assert "continue_from" in response.text and message in response.text
    assert idle_client.get(f"{API}/generations").json()["count"] == 0


def test_a_generation_that_is_not_completed_cannot_be_continued(idle_client: TestClient) -> None:
    pending = idle_client.post(f"{API}/generations", json=synth_body()).json()
    response = idle_client.post(f"{API}/generations", json=synth_body(continue_from=pending["id"]))
    assert response.status_code == 422, response.text
    assert "is pending" in response.text and "continue_from" in response.text
    assert idle_client.get(f"{API}/generations").json()["count"] == 1


def test_info_states_the_new_limits(idle_client: TestClient) -> None:
    info = idle_client.get(f"{API}/info").json()
    assert info["max_duration"] == 300
    assert info["max_continue_seconds"] == 300
    schema = idle_client.get("/openapi.json").json()
    create = schema["components"]["schemas"]["GenerationCreate"]["properties"]
    assert create["duration"]["maximum"] == 300
    assert "continue_from" in create
