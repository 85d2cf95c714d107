"""Instructions executed by the pure-CPU stages, counted by Valgrind's callgrind
(:mod:`benchmarks.instructions`): cost figures the runner's noise cannot move.

A wall-time figure of these stages wanders with the machine (by up to 1.7x within seconds on a
shared runner, docs/benchmarking-trials.md); the instructions a stage executes change only when
its code, or the code it calls, does: two counted runs of one commit read the same to the
instruction. So a 1.25x slower stage reads as more instructions in every run, and identical code
reads the same: the gate judges these once, at 1.05x, with no confirmation. The database
figures count this process's work only (SQLite runs in it); PostgreSQL's server is another
process, so its stages stay timed only.

All stages run in one counted process (about a minute on the 2-core runner, once per commit);
without valgrind, or with an interpreter built without symbols, every figure here is skipped
with the reason.
"""

from __future__ import annotations

from .common import Benchmark, seeded_sqlite_history, track
from .instructions import STAGES, Unavailable, count

#: Generations in the SQLite history the database stages read.
HISTORY_ROWS = 10_000


class InstructionCounts(Benchmark):
    """One figure per stage of :data:`benchmarks.instructions.STAGES`, counted once warm."""

    #: The counted stages run 50-100 times slower than native code.
    timeout = 900.0

    def setup_cache(self) -> dict[str, object]:
        try:
            import dgx_music.audio.export
            import dgx_music.jobs.queue  # noqa: F401
        except ImportError as error:  # an old commit: nothing to count
            return {"unavailable": f"the stages are missing: {error}"}
        try:
            return dict(count(seeded_sqlite_history(HISTORY_ROWS)))
        except Unavailable as error:
            return {"unavailable": str(error)}

    def setup(self, counts: dict[str, object]) -> None:
        super().setup()
        if "unavailable" in counts:
            raise NotImplementedError(str(counts["unavailable"]))


def _figure(stage: str):
    """The ``track_`` figure of one stage: its count, read from ``setup_cache``'s result."""

    def figure(self: InstructionCounts, counts: dict[str, int]) -> float:
        return counts[stage]

    figure.__name__ = f"track_{stage}"
    figure.__doc__ = f"Instructions of {STAGES[stage]}."
    return track("instructions")(figure)


for _stage in STAGES:
    setattr(InstructionCounts, f"track_{_stage}", _figure(_stage))
