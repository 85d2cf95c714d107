"""Database: status lookups and listings on a large history, and queue claim+complete.

Run on SQLite (a file in a scratch directory) and on PostgreSQL: the server DGX_MUSIC_BENCH_PG_URL
(or DGX_MUSIC_TEST_PG_URL) names, else one answering on 127.0.0.1:5432; without one the
PostgreSQL cases are skipped (n/a), never failed (``postgres.pg_url``). The histories are built
once per run and schema (``postgres.shared_database``); a backend whose history cannot be built
fails its own cases, never the other backend's.
"""

from __future__ import annotations

from functools import lru_cache

try:
    from dgx_music.jobs.queue import JobManager

    try:
        from dgx_music.jobs.records import JobOutput
    except ImportError:  # before the job records had a module of their own
        from dgx_music.jobs.queue import JobOutput
    from dgx_music.storage.database import Database, upgrade
    from dgx_music.storage.models import GenerationStatus
except ImportError:  # an old commit without the queue: asv skips the suite
    JobManager = None

from .common import BACKENDS, Benchmark, FastBenchmark, is_slow, make_request, settle
from .postgres import drop_database, fresh_database_url, schema_key, shared_database
from .seeding import bulk_seed_generations

#: Rows in the history the lookups run against: the 100k-row history every run (the spec's
#: "database query" figure), the small and the very large ones in slow mode.
HISTORY_ROWS = [100_000] if not is_slow() else [1_000, 100_000, 1_000_000]
#: Jobs claimed and completed per timed run.
QUEUE_JOBS = 50


def open_database(url: str) -> Database:
    database = Database(url)
    upgrade(database)
    return database


def seed(url: str, rows: int) -> None:
    """Migrate an empty database, fill it with ``rows`` seeded generations, settle it."""
    database = open_database(url)
    try:
        with database.session() as session:
            bulk_seed_generations(session, rows)
        settle(database)
    finally:
        database.dispose()


def middle_id(url: str, rows: int) -> str:
    """The id of the seeded row in the middle of the history (by creation time)."""
    from sqlalchemy import text

    database = Database(url)
    try:
        with database.engine.connect() as connection:
            return str(
                connection.execute(
                    text("SELECT id FROM generations ORDER BY created_at LIMIT 1 OFFSET :n"),
                    {"n": rows // 2},
                ).scalar_one()
            )
    finally:
        database.dispose()


@lru_cache(maxsize=8)
def job_manager(url: str) -> JobManager:
    """One manager (and connection pool) per database and process: asv re-runs ``setup``
    before every timed call, and a new pool each time would time a cold connection."""
    return JobManager(Database(url))


class HistoryQueries(FastBenchmark):
    """Reads the API and CLI make on a large, mostly completed history."""

    params = [BACKENDS, HISTORY_ROWS]
    param_names = ["backend", "rows"]
    timeout = 600.0

    def setup_cache(self) -> dict[tuple[str, int], tuple[str, str]]:
        """Every (backend, rows) history: {case: (database URL, an id in the middle)}, or
        {case: ("failed", why)} when that backend's could not be built. The histories are
        read-only, so one per schema serves every round and both commits of a gate run."""
        if JobManager is None:
            return {}
        seeded: dict[tuple[str, int], tuple[str, str]] = {}
        for backend in BACKENDS:
            for rows in HISTORY_ROWS:
                try:
                    url = shared_database(
                        backend, f"history_{rows}", schema_key(), lambda url, n=rows: seed(url, n)
                    )
                    seeded[backend, rows] = (url, middle_id(url, rows))
                except NotImplementedError:  # no PostgreSQL here: its cases are n/a
                    continue
                except Exception as error:  # an explicit server that does not answer, say
                    seeded[backend, rows] = ("failed", f"{type(error).__name__}: {error}")
        return seeded

    def setup(self, seeded: dict, backend: str, rows: int) -> None:
        super().setup()
        if (backend, rows) not in seeded:
            raise NotImplementedError(f"no {backend} database to benchmark")
        url, self.some_id = seeded[backend, rows]
        if url == "failed":
            raise RuntimeError(f"the {backend} history could not be built: {self.some_id}")
        self.manager = job_manager(url)
        self.manager.get(self.some_id)  # the pool's connection is open before the timed call

    def time_status_lookup(self, seeded: dict, backend: str, rows: int) -> None:
        """``GET /generations/{id}``: one row by primary key, with its prompt."""
        self.manager.get(self.some_id)

    def time_list_newest(self, seeded: dict, backend: str, rows: int) -> None:
        """``GET /generations?limit=50``: newest first, with the total count."""
        self.manager.list(limit=50)

    def time_list_pending(self, seeded: dict, backend: str, rows: int) -> None:
        """``GET /generations?status=pending``: the status + created index."""
        self.manager.list(status=GenerationStatus.PENDING, limit=50)

    def time_counts_by_status(self, seeded: dict, backend: str, rows: int) -> None:
        """What ``/health`` and ``/metrics`` read on every scrape."""
        self.manager.counts_by_status()


class ClaimComplete(Benchmark):
    """The queue's hot path with a no-op engine: claim a job, then complete it."""

    params = [BACKENDS]
    param_names = ["backend"]
    number = 1
    repeat = (3, 10, 60.0)

    def setup(self, backend: str) -> None:
        super().setup()
        if JobManager is None:
            raise NotImplementedError("dgx_music.jobs.queue is missing")
        self.url = fresh_database_url(backend, "queue")
        self.database = open_database(self.url)
        self.manager = JobManager(self.database)
        request = make_request("synth", 0.5)
        for _ in range(QUEUE_JOBS):
            self.manager.submit(request)

    def teardown(self, backend: str) -> None:
        if hasattr(self, "database"):  # also called after a skipped setup
            self.database.dispose()
            drop_database(self.url)

    def time_claim_complete_50(self, backend: str) -> None:
        """50 claims and completions; jobs/s = 50 / this time."""
        for index in range(QUEUE_JOBS):
            job = self.manager.claim("bench-worker", lease_seconds=60)
            self.manager.complete(
                job.id,
                "bench-worker",
                JobOutput(
                    file_path=f"bench/{index}.wav",
                    file_size=1,
                    sha256="0" * 64,
                    sample_rate=32_000,
                    channels=2,
                    actual_duration=0.5,
                    device="cpu",
                    seed=1,
                    generation_seconds=0.0,
                ),
            )
