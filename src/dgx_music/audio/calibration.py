"""Confidences that mean what they say: the chance that a tempo or key is right.

A detector's raw evidence (how far the beat stands out, how far the best key leads the next) is
not a probability. :class:`Calibration` maps it to one with a logistic curve whose two constants
were fitted, by ``python -m benchmarks.analysis_accuracy calibrate``, on the tuning half of the
real-music corpus (docs/ANALYSIS.md): among clips given a confidence near 0.8, about 8 in 10
were right there. Below :data:`UNCERTAIN_BELOW` the value is still reported, but flagged as
uncertain, never stated as fact.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

#: A tempo or key whose confidence is below this is flagged as uncertain (``tempo_uncertain``,
#: ``key_uncertain``): less than 4 chances in 5 of being right.
UNCERTAIN_BELOW = 0.8
FLAG_TEMPO_UNCERTAIN = "tempo_uncertain"
FLAG_KEY_UNCERTAIN = "key_uncertain"


@dataclass(frozen=True)
class Calibration:
    """Logistic map from a detector's evidence to the chance it is right:
    ``1 / (1 + exp(-(intercept + slope * evidence)))``."""

    intercept: float
    slope: float

    def __call__(self, evidence: float) -> float:
        z = self.intercept + self.slope * evidence
        # Written for both signs so that exp never overflows.
        if z >= 0:
            return 1.0 / (1.0 + math.exp(-z))
        e = math.exp(z)
        return e / (1.0 + e)


def stated(
    tempo_bpm: float | None, key: str | None, flags: Sequence[str]
) -> tuple[str | None, str | None]:
    """The tempo (to two decimals) and the key as a person should read them: with
    " (uncertain)" after the one ``flags`` calls uncertain; ``None`` stays ``None``."""

    def hedged(text: str, flag: str) -> str:
        return f"{text} (uncertain)" if flag in flags else text

    return (
        None if tempo_bpm is None else hedged(f"{tempo_bpm:.2f}", FLAG_TEMPO_UNCERTAIN),
        None if key is None else hedged(key, FLAG_KEY_UNCERTAIN),
    )
