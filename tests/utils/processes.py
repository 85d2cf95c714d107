"""Child processes of the tests: every wait bounded, a child that overstays killed."""

from __future__ import annotations

import subprocess


def finish(process: subprocess.Popen, timeout: float) -> str:
    """Wait for ``process`` up to ``timeout`` s (killed past it); its output, decoded.

    The caller reads ``process.returncode`` (negative: killed by that signal).
    """
    try:
        out, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        out, _ = process.communicate()
    return out.decode(errors="replace") if isinstance(out, bytes) else (out or "")
