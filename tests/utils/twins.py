"""musicgen-small's twin, built once per test process for every module that needs it.

Building draws 0.6 B seeded weights (3-8 s on one core). The modules that use it share the
``twins`` xdist group, so one worker builds it once.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import Any

import torch

from dgx_music.generation.twins import build_twin

SMALL = "twin:facebook/musicgen-small"


@dataclass(frozen=True)
class BuiltTwin:
    """A twin and what was seen around its build: the time it took and torch's global random
    state before and after (building must leave it alone)."""

    model: Any
    processor: Any
    seconds: float
    rng_before: torch.Tensor
    rng_after: torch.Tensor


@functools.cache
def small_twin() -> BuiltTwin:
    """musicgen-small's twin in float32 on the CPU, built on the first call."""
    rng_before = torch.random.get_rng_state()
    started = time.perf_counter()
    model, processor = build_twin(SMALL, dtype=torch.float32)
    seconds = time.perf_counter() - started
    return BuiltTwin(model, processor, seconds, rng_before, torch.random.get_rng_state())
