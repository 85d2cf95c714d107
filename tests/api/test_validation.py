"""Bad input gets a 4xx with field-level messages, never a 500, and never creates a job."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from dgx_music.generation.engine import get_engine
from tests.api.helpers import API, synth_body

#: SQLite only: every request here is refused before it reaches the database, and a refused one
#: must leave it as it was on either backend. The fuzz test (test_fuzz.py) sends its bodies to
#: PostgreSQL too, for what only PostgreSQL refuses (NUL bytes, integers past 64 bits).
pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

MISSING = object()


def body_with(**changes: Any) -> dict[str, Any]:
    body = synth_body()
    for name, value in changes.items():
        if value is MISSING:
            body.pop(name, None)
        else:
            body[name] = value
    return body


INVALID_BODIES = {
    "empty prompt": (body_with(prompt=""), "prompt"),
    "blank prompt": (body_with(prompt=" \n\t "), "prompt"),
    "too long prompt": (body_with(prompt="x" * 1001), "prompt"),
    "missing prompt": (body_with(prompt=MISSING), "prompt"),
    "prompt not text": (body_with(prompt=42), "prompt"),
    "NUL in prompt": (body_with(prompt="a\x00b"), "prompt"),
    "negative duration": (body_with(duration=-1), "duration"),
    "zero duration": (body_with(duration=0), "duration"),
    "too long duration": (body_with(duration=300.5), "duration"),
    "huge duration": (body_with(duration=1e308), "duration"),
    "missing duration": (body_with(duration=MISSING), "duration"),
    "duration as text": (body_with(duration="5"), "duration"),
    "duration as boolean": (body_with(duration=True), "duration"),
    "unknown model": (body_with(model="facebook/musicgen-gigantic"), "model"),
    "model path": (body_with(model="/etc"), "model"),
    "model not text": (body_with(model=["synth"]), "model"),
    "negative seed": (body_with(seed=-1), "seed"),
    "too large seed": (body_with(seed=2**32), "seed"),
    "fractional seed": (body_with(seed=1.5), "seed"),
    "zero temperature": (body_with(temperature=0), "temperature"),
    "negative top_k": (body_with(top_k=-1), "top_k"),
    "huge top_k": (body_with(top_k=2**40), "top_k"),
    "top_p above 1": (body_with(top_p=1.5), "top_p"),
    "guidance below 1": (body_with(guidance_scale=0.5), "guidance_scale"),
    "unknown field": (body_with(durration=5), "durration"),
}


@pytest.fixture
def no_jobs_created(idle_client: TestClient) -> Iterator[None]:
    yield
    assert idle_client.get(f"{API}/generations").json()["count"] == 0


@pytest.mark.parametrize(("body", "field"), INVALID_BODIES.values(), ids=list(INVALID_BODIES))
def test_invalid_fields_get_422_naming_the_field(
    idle_client: TestClient, no_jobs_created: None, body: dict[str, Any], field: str
) -> None:
    response = idle_client.post(f"{API}/generations", json=body)

    assert response.status_code == 422, response.text
    error = response.json()
    assert error["error"] == "validation_error"
    assert field in [item["field"] for item in error["detail"]]
    assert all(item["message"] for item in error["detail"])
    assert field in error["message"]


@pytest.mark.parametrize(
    ("body", "limit"),
    [
        (body_with(prompt="x" * 1001), "at most 1000 characters"),
        (body_with(duration=0), "0 < duration <= 300"),
        (body_with(duration=301), "0 < duration <= 300"),
        (body_with(seed=-5), "0 <= seed <= 4294967295"),
    ],
)
def test_range_errors_state_the_limit(
    idle_client: TestClient, body: dict[str, Any], limit: str
) -> None:
    detail = idle_client.post(f"{API}/generations", json=body).json()["detail"]

    assert detail[0]["limit"] == limit


def test_a_model_without_weights_is_refused(idle_client: TestClient) -> None:
    missing = [
        model.name for model in get_engine().available_models() if not model.available_offline
    ]
    if not missing:
        pytest.skip("every model's weights are installed here")

    response = idle_client.post(f"{API}/generations", json=body_with(model=missing[0]))

    assert response.status_code == 422
    detail = response.json()["detail"][0]
    assert detail["field"] == "model"
    assert "not installed" in detail["message"]


def test_limits_follow_the_settings(make_client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from dgx_music.config import get_settings

    monkeypatch.setenv("DGX_MUSIC_MAX_DURATION", "5")
    monkeypatch.setenv("DGX_MUSIC_MAX_PROMPT_LENGTH", "10")
    get_settings.cache_clear()
    client = make_client()

    assert client.post(f"{API}/generations", json=body_with(duration=5.5)).status_code == 422
    assert client.post(f"{API}/generations", json=body_with(prompt="x" * 11)).status_code == 422
    assert client.post(f"{API}/generations", json=body_with(prompt="x" * 10)).status_code == 202
    schema = client.get("/openapi.json").json()["components"]["schemas"]["GenerationCreate"]
    assert schema["properties"]["duration"]["maximum"] == 5
    assert schema["properties"]["prompt"]["maxLength"] == 10


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b'{"prompt": "x", "duration": ', "application/json"),
        (b"{'prompt': 'x'}", "application/json"),
        (b"not json at all", "application/json"),
        (b"", "application/json"),
        (b"[]", "application/json"),
        (b'"just a string"', "application/json"),
        (b"null", "application/json"),
        (b"\xff\xfe\x00garbage", "application/json"),
        (b'{"prompt": "\xc3\x28", "duration": 1}', "application/json"),
        (b"[" * 30_000 + b"]" * 30_000, "application/json"),
        (json.dumps(synth_body()).encode(), "text/plain"),
        (b"prompt=x&duration=1", "application/x-www-form-urlencoded"),
    ],
)
def test_malformed_bodies_get_422(
    idle_client: TestClient, no_jobs_created: None, content: bytes, content_type: str
) -> None:
    response = idle_client.post(
        f"{API}/generations", content=content, headers={"Content-Type": content_type}
    )

    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["field"] in {"body", "prompt", "duration"}


def test_lone_surrogates_get_422(idle_client: TestClient, no_jobs_created: None) -> None:
    # JSON can carry UTF-16 surrogate escapes that are not valid Unicode text.
    for field in ("prompt", "model"):
        content = json.dumps(body_with(**{field: "a\ud800b"})).encode()
        response = idle_client.post(
            f"{API}/generations", content=content, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 422
        assert response.json()["detail"][0]["field"] == field


def test_non_finite_json_numbers_get_422(idle_client: TestClient, no_jobs_created: None) -> None:
    for literal in ("NaN", "Infinity", "-Infinity", "1e400"):
        content = f'{{"prompt": "x", "duration": {literal}, "model": "synth"}}'.encode()
        response = idle_client.post(
            f"{API}/generations", content=content, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 422, literal
        assert response.json()["detail"][0]["field"] == "duration"


def test_body_over_64_kb_is_413(idle_client: TestClient, no_jobs_created: None) -> None:
    body = json.dumps(body_with(prompt="x" * 70_000)).encode()

    declared = idle_client.post(
        f"{API}/generations", content=body, headers={"Content-Type": "application/json"}
    )
    streamed = idle_client.post(
        f"{API}/generations",
        content=iter([body[:40_000], body[40_000:]]),
        headers={"Content-Type": "application/json"},
    )

    for response in (declared, streamed):
        assert response.status_code == 413
        assert response.json()["error"] == "payload_too_large"


def test_a_body_at_the_limit_is_read(idle_client: TestClient) -> None:
    body = json.dumps(synth_body()).encode()
    padded = body + b" " * (64 * 1024 - len(body))

    response = idle_client.post(
        f"{API}/generations", content=padded, headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 202


def test_unknown_routes_and_methods_get_json_errors(idle_client: TestClient) -> None:
    missing = idle_client.get(f"{API}/nothing-here")
    wrong_method = idle_client.put(f"{API}/generations")

    assert missing.status_code == 404
    assert missing.json()["error"] == "not_found"
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"] == "method_not_allowed"
    assert "POST" in wrong_method.headers["allow"]
