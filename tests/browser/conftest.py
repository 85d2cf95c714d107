"""Browser fixtures: a real uvicorn server on 127.0.0.1 and Debian's Chromium via Playwright."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dgx_music.api import create_app
from dgx_music.api.config import ApiSettings
from dgx_music.config import get_settings
from tests.api.helpers import live_server
from tests.conftest import skip_or_fail

CHROMIUM = Path("/usr/bin/chromium")
#: No network, no GPU, no first-run chores: the browser talks only to the test server.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        skip_or_fail(f"{CHROMIUM} is missing: apt-get install chromium (.ci/run does)")
    try:
        from playwright import sync_api
    except ImportError:
        skip_or_fail("playwright is not installed: pip install -e '.[dev]'")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield browser
        finally:
            browser.close()


#: The key the keyed server wants.
API_KEY = "browser-test-key"


@pytest.fixture
def server_url(
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    warm_metadata: None,
) -> Iterator[str]:
    """The service with one in-process worker over a fresh SQLite database; it wants
    :data:`API_KEY` when the test is marked ``@pytest.mark.parametrize("server_url", ["keyed"],
    indirect=True)``."""
    monkeypatch.setenv("DGX_MUSIC_DATABASE_URL", f"sqlite:///{tmp_path / 'browser.db'}")
    monkeypatch.setenv("DGX_MUSIC_POLL_SECONDS", "0.05")
    get_settings.cache_clear()
    keyed = getattr(request, "param", None) == "keyed"
    api_settings = ApiSettings(api_key=API_KEY if keyed else None)
    app = create_app(get_settings(), start_workers=True, api_settings=api_settings)
    with live_server(app) as url:
        yield url


@pytest.fixture
def artifacts(request: pytest.FixtureRequest) -> Path:
    """``test-artifacts/`` at the repository root (git-ignored)."""
    path = request.config.rootpath / "test-artifacts"
    path.mkdir(exist_ok=True)
    return path
