"""The offline site: asv publish, then the asv-tachyon viewer over the same data."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from benchgate.asvrun import DEFAULT_CONFIG, HTML_DIR, asv

#: Files of asv's legacy page that load libraries from CDNs; the viewer replaces that page.
LEGACY_PAGES = ["index.legacy.html"]
EXTERNAL_REFERENCE = re.compile(
    r"""<(?:script|link)\b[^>]*\b(?:src|href)=["']?(?:https?:)?//""", re.I
)


def publish(config: Path = DEFAULT_CONFIG) -> int:
    """Build the site; no page may load anything from another host (it must work offline)."""
    if asv("publish", config=config) != 0:
        return 1
    subprocess.check_call([sys.executable, "-m", "asv_tachyon", "install", str(HTML_DIR)])
    for name in LEGACY_PAGES:
        (HTML_DIR / name).unlink(missing_ok=True)
    external = [
        str(page.relative_to(HTML_DIR))
        for page in HTML_DIR.rglob("*.html")
        if EXTERNAL_REFERENCE.search(page.read_text(errors="replace"))
    ]
    if external:
        print(f"pages that load from another host: {', '.join(external)}", file=sys.stderr)
        return 1
    return 0
