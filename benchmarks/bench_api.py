"""REST API: request latency through the whole FastAPI stack, in process (no network).

The application runs against a seeded SQLite history without workers, so the figures are the
API's own cost (validation, database, serialisation), not the generation's.
"""

from __future__ import annotations

import os
from functools import lru_cache

try:
    from fastapi.testclient import TestClient

    from dgx_music.api import create_app
    from dgx_music.config import Settings
    from dgx_music.storage.database import Database, upgrade
except ImportError:  # an old commit without the API: asv skips the suite
    create_app = None

from .common import Benchmark, db_helpers, scratch_dir, settle

#: Rows in the history behind the API.
HISTORY_ROWS = 10_000
API = "/api/v1"
#: A valid submission (synth, so no weights are needed) and one rejected on two fields.
SUBMISSION = {"prompt": "benchmark groove, 120 bpm in A minor", "duration": 4, "model": "synth"}
REJECTED_SUBMISSION = {"prompt": "", "duration": -1}


@lru_cache(maxsize=1)
def api_client(directory: str) -> tuple[TestClient, str]:
    """One started application per process over the seeded history, and an id in it.

    Cached, because asv re-runs ``setup`` before every timed call: a new app per call would
    time a cold one.
    """
    settings = Settings(
        data_dir=directory,
        output_dir=os.path.join(directory, "outputs"),
        default_model="synth",
        worker_concurrency=0,
    )
    client = TestClient(create_app(settings, start_workers=False))
    client.__enter__()  # runs the lifespan (database open, migrations); left open for the process
    listed = client.get(f"{API}/generations", params={"limit": 1}).json()
    return client, listed["data"][0]["id"]


class ApiRequests(Benchmark):
    """One request per method, through TestClient and the real middleware."""

    def setup_cache(self) -> str:
        """A seeded SQLite history; returns its directory."""
        directory = scratch_dir()
        if create_app is None:
            return str(directory)
        database = Database(f"sqlite:///{directory / 'dgx_music.db'}")
        upgrade(database)
        with database.session() as session:
            db_helpers().bulk_seed_generations(session, HISTORY_ROWS)
        settle(database)
        database.dispose()
        return str(directory)

    def setup(self, directory: str) -> None:
        super().setup()
        if create_app is None:
            raise NotImplementedError("dgx_music.api is missing")
        self.client, self.some_id = api_client(directory)

    def time_get_status(self, directory: str) -> None:
        self.client.get(f"{API}/generations/{self.some_id}")

    def time_list_newest_50(self, directory: str) -> None:
        self.client.get(f"{API}/generations", params={"limit": 50})

    def time_submit(self, directory: str) -> None:
        self.client.post(f"{API}/generations", json=SUBMISSION)

    def time_rejected_submit(self, directory: str) -> None:
        """A 422 with field-level messages: the path every bad client request takes."""
        self.client.post(f"{API}/generations", json=REJECTED_SUBMISSION)

    def time_health(self, directory: str) -> None:
        self.client.get(f"{API}/health")
