"""Generation windows a fifth of the real ones, for tests of how jobs are split and batched.

Which jobs share a ``generate`` call, what each job's generator draws and which jobs a worker
claims together depend only on the plan of windows, not on how long a window is. Planned on
300-frame (6 s) windows with 2.4 s of context, a 6.2 s job takes two windows as a 31 s job does
on the real 30 s ones, at a fifth of the cost. Tests of real lengths (the 75 s track, the first
30 s) keep the real windows.
"""

from __future__ import annotations

import functools

import pytest

from dgx_music.generation import musicgen, windows

#: Frames in a short window, prompt included, and its length in seconds at 50 Hz.
SHORT_WINDOW_FRAMES = 300
SHORT_WINDOW_SECONDS = SHORT_WINDOW_FRAMES / 50
#: Context of the windows after the first, seconds (the real default is 12 of 30).
SHORT_CONTEXT_SECONDS = 2.4


def use_short_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    """Plan every MusicGen job, and band every claim, on short windows until the test ends.

    Backends made from settings should also get ``DGX_MUSIC_CONTEXT_SECONDS`` set to
    :data:`SHORT_CONTEXT_SECONDS`; a backend already made, its ``context_seconds``.
    """
    monkeypatch.setattr(windows, "MAX_WINDOW_SECONDS", SHORT_WINDOW_SECONDS)
    monkeypatch.setattr(
        musicgen,
        "plan_windows",
        functools.partial(windows.plan_windows, max_frames=SHORT_WINDOW_FRAMES),
    )
