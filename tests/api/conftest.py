"""API fixtures: the application over the test database (SQLite and PostgreSQL), with or
without in-process workers, behind FastAPI's TestClient."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest
from fastapi.testclient import TestClient

from dgx_music.api import create_app
from dgx_music.api.config import ApiSettings
from dgx_music.config import get_settings
from tests.api.helpers import API, synth_body, wait_for_job


@pytest.fixture
def fast_polling(monkeypatch: pytest.MonkeyPatch) -> None:
    """Workers look for jobs every 50 ms, so tests wait for work, not for polls."""
    monkeypatch.setenv("DGX_MUSIC_POLL_SECONDS", "0.05")
    get_settings.cache_clear()


ClientFactory = Callable[..., TestClient]


@pytest.fixture
def make_client(database: Any, fast_polling: None) -> Iterator[ClientFactory]:
    """Build a started TestClient: ``make_client(start_workers=False, api_key="k")``."""
    with ExitStack() as stack:

        def make(*, start_workers: bool = False, **api_fields: Any) -> TestClient:
            app = create_app(
                get_settings(), start_workers=start_workers, api_settings=ApiSettings(**api_fields)
            )
            return stack.enter_context(TestClient(app))

        yield make


@pytest.fixture
def client(make_client: ClientFactory, warm_metadata: None) -> TestClient:
    """The API with one in-process worker: submitted synth jobs complete."""
    return make_client(start_workers=True)


@pytest.fixture
def idle_client(make_client: ClientFactory) -> TestClient:
    """The API without workers: submitted jobs stay pending."""
    return make_client(start_workers=False)


@pytest.fixture
def completed(client: TestClient) -> dict[str, Any]:
    """A completed synth generation."""
    response = client.post(f"{API}/generations", json=synth_body())
    assert response.status_code == 202, response.text
    job = wait_for_job(client, response.json()["id"])
    assert job["status"] == "completed", job
    return job
