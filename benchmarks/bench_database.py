"""Database: status lookups and listings on a large history, and queue claim+complete.

Run on SQLite (a file in a scratch directory) and on PostgreSQL: the server DGX_MUSIC_BENCH_PG_URL
(or DGX_MUSIC_TEST_PG_URL) names, else one answering on 127.0.0.1:5432; without one the
PostgreSQL cases are skipped (n/a), never failed. The PostgreSQL databases are called
``dgx_music_bench_<token>_*`` (see ``common.run_token``).
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

from .common import (
    BACKENDS,
    Benchmark,
    FastBenchmark,
    db_helpers,
    drop_database,
    fresh_database_url,
    is_slow,
    settle,
)

#: Rows in the history the lookups run against: the 100k-row history every run (the spec's
#: "database query" figure), the small and the very large ones in slow mode.
HISTORY_ROWS = [100_000] if not is_slow() else [1_000, 100_000, 1_000_000]
#: Jobs claimed and completed per timed run.
QUEUE_JOBS = 50


def open_database(url: str) -> Database:
    database = Database(url)
    upgrade(database)
    return database


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
        """Seed every (backend, rows) history once: {case: (database URL, an id in the middle)}."""
        if JobManager is None:
            return {}
        seeded = {}
        for backend in BACKENDS:
            for rows in HISTORY_ROWS:
                try:
                    url = fresh_database_url(backend, f"history_{rows}")
                except NotImplementedError:
                    continue
                database = open_database(url)
                with database.session() as session:
                    ids = db_helpers().bulk_seed_generations(session, rows)
                settle(database)
                database.dispose()
                seeded[backend, rows] = (url, ids[len(ids) // 2])
        return seeded

    def setup(self, seeded: dict, backend: str, rows: int) -> None:
        super().setup()
        if (backend, rows) not in seeded:
            raise NotImplementedError(f"no {backend} database to benchmark")
        url, self.some_id = seeded[backend, rows]
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
        request = db_helpers().synth_request()
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
