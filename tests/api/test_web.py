"""The page at ``/``: served from the package, self-contained, keyboard-usable markup."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from fastapi.testclient import TestClient

from dgx_music.api.routes.web import WEB_DIR

WEB_FILES = ["index.html", "app.js", "style.css"]


class Elements(HTMLParser):
    """Every start tag with its attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


@pytest.fixture
def page(idle_client: TestClient) -> Elements:
    response = idle_client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    parser = Elements()
    parser.feed(response.text)
    return parser


def test_page_and_assets_are_served(idle_client: TestClient) -> None:
    page = idle_client.get("/")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    script = idle_client.get("/static/app.js")
    style = idle_client.get("/static/style.css")
    assert script.status_code == style.status_code == 200
    assert "javascript" in script.headers["content-type"]
    assert style.headers["content-type"].startswith("text/css")
    assert idle_client.get("/static/../config.py").status_code == 404
    assert idle_client.get("/static/%2e%2e/config.py").status_code == 404


@pytest.mark.parametrize("name", WEB_FILES)
def test_no_external_resources(name: str) -> None:
    text = (WEB_DIR / name).read_text(encoding="utf-8")
    assert not re.search(r"https?://", text), f"{name} names an external URL"
    assert not re.search(r"@import|url\(", text), f"{name} loads another resource"


def test_every_control_is_labelled_and_buttons_are_buttons(page: Elements) -> None:
    labels = {attrs.get("for") for tag, attrs in page.tags if tag == "label"}
    controls = [attrs for tag, attrs in page.tags if tag in {"input", "select", "textarea"}]
    assert controls
    for attrs in controls:
        assert attrs.get("id") in labels, attrs
    for required in ("prompt", "duration", "model", "seed"):
        assert required in labels
        assert f"{required}-error" in {attrs.get("id") for _, attrs in page.tags}
    assert not [attrs for tag, attrs in page.tags if attrs.get("onclick")]
    assert any(tag == "button" and attrs.get("type") == "submit" for tag, attrs in page.tags)
    assert ("audio", {"id": "player", "controls": None, "preload": "metadata"}) in page.tags
    assert any(tag == "canvas" and attrs.get("id") == "waveform" for tag, attrs in page.tags)


def test_user_text_is_never_inserted_as_html() -> None:
    script = (WEB_DIR / "app.js").read_text(encoding="utf-8")
    assert "innerHTML" not in script and "insertAdjacentHTML" not in script
