"""Tracks longer than MusicGen's 30 s window: which windows a job is generated in.

MusicGen was trained on 30 s excerpts. One ``generate`` call past that would run (its position
embeddings stretch without complaint) but out of what the model has seen, so a long job is
generated in windows of at most :data:`MAX_WINDOW_FRAMES` frames of tokens, prompt included.
Each window after the first is prompted with the last ``DGX_MUSIC_CONTEXT_SECONDS`` of tokens
before it (as audiocraft's ``extend_stride``, whose default keeps 12 s) and adds the rest; a
continuation's first window is prompted with the given track's tokens instead. One generator
draws every window's tokens, so the seed reproduces the whole track, and the first window of a
long job is exactly the job of 30 s with the same seed and prompt.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dgx_music.generation.request import BatchItem, ProgressCallback

if TYPE_CHECKING:
    import torch

#: Frames in one window, prompt included: 30 s at 50 Hz, the length MusicGen was trained on.
MAX_WINDOW_FRAMES = 1500
#: The same window in seconds, at MusicGen's 50 Hz.
MAX_WINDOW_SECONDS = MAX_WINDOW_FRAMES / 50


@dataclass(frozen=True)
class Window:
    """One ``generate`` call of a job: ``context`` frames of earlier tokens prompt it and it adds
    ``new`` frames."""

    context: int
    new: int


def plan_windows(
    frames: int,
    *,
    context_frames: int,
    prompt_frames: int = 0,
    max_frames: int = MAX_WINDOW_FRAMES,
) -> list[Window]:
    """The windows that generate ``frames`` new frames.

    Parameters
    ----------
    frames
        New frames the job needs.
    context_frames
        Frames of earlier tokens that prompt each window after the first (fewer while fewer
        exist).
    prompt_frames
        Frames of a continuation's prompt, which prompt the first window.
    max_frames
        Most frames in a window, prompt included.

    Raises
    ------
    ValueError
        A prompt or context leaves no room in a window for new frames.
    """
    if not 0 <= context_frames < max_frames or not 0 <= prompt_frames < max_frames:
        raise ValueError(
            f"context ({context_frames}) and prompt ({prompt_frames}) frames must leave room "
            f"in a window of {max_frames}"
        )
    windows: list[Window] = []
    made = 0
    while made < frames:
        context = prompt_frames if not windows else min(context_frames, prompt_frames + made)
        new = min(max_frames - context, frames - made)
        windows.append(Window(context, new))
        made += new
    return windows


@dataclass
class WindowedJob:
    """One job of a batch as its windows are generated: its plan, its generator and the tokens
    so far (a continuation's prompt first).

    Parameters
    ----------
    item
        The job as the batch received it.
    windows
        From :func:`plan_windows`.
    delay
        Decoding steps past a window's last frame before every codebook has drawn it.
    generator
        The job's own, seeded once for the whole track.
    tokens
        (codebooks, frames) on the model's device: the prompt's codes, then every window's.
    """

    item: BatchItem
    windows: list[Window]
    delay: int
    generator: torch.Generator
    tokens: torch.Tensor
    prompt_frames: int = 0
    #: What stopped the job (its progress callback raised: cancelled, lease lost).
    error: Exception | None = None
    _steps_before: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        done = 0
        for window in self.windows:
            self._steps_before.append(done)
            done += window.new + self.delay

    @property
    def total_steps(self) -> int:
        """Decoding steps of all windows: what the job's progress counts to."""
        return sum(window.new + self.delay for window in self.windows)

    def steps(self, index: int) -> int:
        return self.windows[index].new + self.delay

    def context(self, index: int) -> torch.Tensor:
        """The tokens that prompt window ``index``: (codebooks, context frames)."""
        context = self.windows[index].context
        return self.tokens[:, self.tokens.shape[-1] - context :]

    def progress(self, index: int) -> ProgressCallback | None:
        """Window ``index``'s progress callback, reporting steps of the whole track."""
        report = self.item.progress
        if report is None:
            return None
        before, total = self._steps_before[index], self.total_steps

        def window_progress(done: int, _steps: int) -> None:
            report(before + done, total)

        return window_progress

    def add(self, codes: torch.Tensor) -> None:
        """Append a window's new (codebooks, frames) codes."""
        import torch  # here, so that planning (the worker's batching) does not load torch

        self.tokens = torch.cat([self.tokens, codes], dim=-1)

    @property
    def new_codes(self) -> torch.Tensor:
        """What the job generated, without the prompt: (codebooks, frames)."""
        return self.tokens[:, self.prompt_frames :]


def frames_for(seconds: float, frame_rate: int) -> int:
    """Codec frames that cover ``seconds`` of audio."""
    return math.ceil(seconds * frame_rate)


def duration_band(duration: float, context_seconds: float) -> tuple[float, float]:
    """The durations, ``(low, high]`` seconds, that take as many windows as ``duration``.

    A worker batches a job only with jobs of its band: a batch returns when its longest job is
    done, so a 5 s job never waits for a 300 s one (docs/LONGFORM.md measures what that costs).
    """
    window = MAX_WINDOW_SECONDS
    if duration <= window:
        return 0.0, window
    step = window - context_seconds
    extra = math.ceil((duration - window) / step - 1e-9)
    return window + (extra - 1) * step, window + extra * step


def window_groups(jobs: Sequence[WindowedJob], index: int) -> list[list[WindowedJob]]:
    """The jobs still running that have a window ``index``, grouped by its context length: one
    ``generate`` call each (a call's prompts must be equally long)."""
    groups: dict[int, list[WindowedJob]] = {}
    for job in jobs:
        if job.error is None and index < len(job.windows):
            groups.setdefault(job.windows[index].context, []).append(job)
    return list(groups.values())
