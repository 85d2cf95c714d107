"""``DGX_MUSIC_API_KEY``: mutating routes and audio need the bearer key; reading does not."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from dgx_music.api.config import ApiSettings
from tests.api.helpers import API, synth_body, wait_for_job

#: SQLite only: the key is checked before a request reaches the database, and a refused one
#: must leave it as it was on either backend.
sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

KEY = "test-key-0123456789"
GOOD = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture
def keyed(make_client: Any, warm_metadata: None) -> TestClient:
    return make_client(start_workers=True, api_key=KEY)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Basic {KEY}"},
        {"Authorization": KEY},
    ],
    ids=["none", "wrong key", "wrong scheme", "no scheme"],
)
@sqlite_only
def test_mutating_routes_and_audio_need_the_key(keyed: TestClient, headers: dict[str, str]) -> None:
    created = keyed.post(f"{API}/generations", json=synth_body(), headers=GOOD)
    assert created.status_code == 202
    job = wait_for_job(keyed, created.json()["id"])
    url = f"{API}/generations/{job['id']}"

    refused = [
        keyed.post(f"{API}/generations", json=synth_body(), headers=headers),
        keyed.delete(url, headers=headers),
        keyed.get(f"{url}/audio", headers=headers),
        keyed.get(f"{url}/waveform", headers=headers),
    ]

    for response in refused:
        assert response.status_code == 401, response.request.url
        assert response.json()["error"] == "unauthorized"
        assert response.headers["www-authenticate"] == "Bearer"
    assert keyed.get(f"{API}/generations").json()["count"] == 1
    assert keyed.get(f"{url}/audio", headers=GOOD).status_code == 200
    assert keyed.get(f"{url}/waveform", headers=GOOD).status_code == 200
    assert keyed.delete(url, headers=GOOD).status_code == 204


@sqlite_only
def test_reading_routes_need_no_key(keyed: TestClient) -> None:
    for path in ("/generations", "/health", "/metrics", "/models", "/info"):
        assert keyed.get(f"{API}{path}").status_code == 200, path
    assert keyed.get(f"{API}/info").json()["auth_required"] is True
    assert keyed.get("/").status_code == 200


@sqlite_only
def test_without_a_configured_key_no_header_is_needed(idle_client: TestClient) -> None:
    response = idle_client.post(
        f"{API}/generations", json=synth_body(), headers={"Authorization": "Bearer anything"}
    )

    assert response.status_code == 202
    assert idle_client.get(f"{API}/info").json()["auth_required"] is False


def test_key_and_origins_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DGX_MUSIC_API_KEY", KEY)
    monkeypatch.setenv("DGX_MUSIC_CORS_ORIGINS", "http://a.example:3000, http://b.example")
    settings = ApiSettings()
    assert settings.api_key is not None and settings.api_key.get_secret_value() == KEY
    assert settings.cors_origins == ["http://a.example:3000", "http://b.example"]
    assert KEY not in repr(settings)

    monkeypatch.setenv("DGX_MUSIC_API_KEY", "  ")
    assert ApiSettings().auth_required is False
