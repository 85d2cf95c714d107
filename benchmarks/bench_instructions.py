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
from .instructions import Unavailable, count

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

    @track("instructions")
    def track_normalise(self, counts: dict[str, int]) -> float:
        return counts["normalise"]

    @track("instructions")
    def track_encode_wav(self, counts: dict[str, int]) -> float:
        return counts["encode_wav"]

    @track("instructions")
    def track_analyze(self, counts: dict[str, int]) -> float:
        return counts["analyze"]

    @track("instructions")
    def track_synth(self, counts: dict[str, int]) -> float:
        return counts["synth"]

    @track("instructions")
    def track_status_lookup(self, counts: dict[str, int]) -> float:
        return counts["status_lookup"]

    @track("instructions")
    def track_list_newest(self, counts: dict[str, int]) -> float:
        return counts["list_newest"]

    @track("instructions")
    def track_counts_by_status(self, counts: dict[str, int]) -> float:
        return counts["counts_by_status"]

    @track("instructions")
    def track_read_generation(self, counts: dict[str, int]) -> float:
        return counts["read_generation"]
