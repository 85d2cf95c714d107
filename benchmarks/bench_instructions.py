"""Instructions executed by the pure-CPU stages, counted by Valgrind's callgrind
(:mod:`benchmarks.instructions`): cost figures the runner's noise cannot move.

A wall-time figure of these stages wanders with the machine (by up to 1.7x within seconds on a
shared runner, docs/benchmarking-trials.md); the instructions a stage executes change only when
its code, or the code it calls, does: two counted runs of one commit agree within about 1 %
(docs/benchmarking-trials.md). So a 1.25x slower stage reads as more instructions in every run,
and identical code reads nearly the same: the gate judges these once, at 1.05x, with no
confirmation. The database
figures count this process's work only: on SQLite, which runs in it, that is the whole query; on
PostgreSQL it is the client's share (``PostgresInstructionCounts``), while the server's stays
timed only.

All stages run in one counted process (about a minute on the 2-core runner, once per commit);
without valgrind, or with an interpreter built without symbols, every figure here is skipped
with the reason.
"""

from __future__ import annotations

from .common import Benchmark, seeded_sqlite_history, track
from .instructions import DATABASE_STAGES, STAGES, Unavailable, count
from .postgres import schema_key, shared_database

#: Generations in the histories the database stages read.
HISTORY_ROWS = 10_000


def _counted(database_url, stages=tuple(STAGES)) -> dict[str, object]:
    """``count``'s figures, or {"unavailable": why} where nothing can be counted."""
    try:
        import dgx_music.audio.export
        import dgx_music.jobs.queue  # noqa: F401
    except ImportError as error:  # an old commit: nothing to count
        return {"unavailable": f"the stages are missing: {error}"}
    try:
        return dict(count(database_url(), stages))
    except Unavailable as error:
        return {"unavailable": str(error)}


class CountedStages(Benchmark):
    """Base of the count figures: ``setup_cache`` counts, a figure reads its stage."""

    #: The counted stages run 50-100 times slower than native code.
    timeout = 900.0

    def setup(self, counts: dict[str, object]) -> None:
        super().setup()
        if "unavailable" in counts:
            raise NotImplementedError(str(counts["unavailable"]))


class InstructionCounts(CountedStages):
    """One figure per stage of :data:`benchmarks.instructions.STAGES`, counted once warm; the
    database stages read a SQLite history (in this process: their whole work)."""

    def setup_cache(self) -> dict[str, object]:
        return _counted(lambda: f"sqlite:///{seeded_sqlite_history(HISTORY_ROWS) / 'dgx_music.db'}")


class PostgresInstructionCounts(CountedStages):
    """The database stages on a PostgreSQL history: this process's share of the work (building
    the statement, the driver, turning rows into records), which a change to our code moves and
    the server's time does not hide. Skipped where no server answers."""

    timeout = 300.0

    def setup_cache(self) -> dict[str, object]:
        from .bench_database import seed

        def database_url() -> str:
            build = lambda url: seed(url, HISTORY_ROWS)  # noqa: E731
            return shared_database("postgresql", f"history_{HISTORY_ROWS}", schema_key(), build)

        try:
            return _counted(database_url, DATABASE_STAGES)
        except NotImplementedError as error:  # no PostgreSQL server here
            return {"unavailable": str(error)}


def _figure(stage: str):
    """The ``track_`` figure of one stage: its count, read from ``setup_cache``'s result."""

    def figure(self: CountedStages, counts: dict[str, int]) -> float:
        return counts[stage]

    figure.__name__ = f"track_{stage}"
    figure.__doc__ = f"Instructions of {STAGES[stage].what}."
    return track("instructions")(figure)


for _stage in STAGES:
    setattr(InstructionCounts, f"track_{_stage}", _figure(_stage))
for _stage in DATABASE_STAGES:
    setattr(PostgresInstructionCounts, f"track_{_stage}", _figure(_stage))
