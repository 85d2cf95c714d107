"""``/``: the web page, a static file shipped in the package (no build step, no CDN)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

#: Directory of the page's files: index.html, app.js, style.css.
WEB_DIR = Path(__file__).resolve().parent.parent / "web"
#: The page loads nothing from anywhere but this server.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "media-src 'self' blob:; connect-src 'self'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

router = APIRouter(tags=["web"], include_in_schema=False)


@cache
def _index_html() -> str:
    return (WEB_DIR / "index.html").read_text(encoding="utf-8")


@router.get("/", response_class=HTMLResponse)
def read_index() -> HTMLResponse:
    """The page to make, follow, play and manage music."""
    return HTMLResponse(_index_html(), headers=PAGE_HEADERS)
