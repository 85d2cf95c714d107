"""REST API: request latency through the whole FastAPI stack, in process (no network).

The application runs against a seeded SQLite history without workers, so the figures are the
API's own cost (validation, database, serialisation), not the generation's.
"""

from __future__ import annotations

import os

try:
    from fastapi.testclient import TestClient

    from dgx_music.api import create_app
    from dgx_music.config import Settings
    from dgx_music.storage.database import Database, upgrade
except ImportError:  # an old commit without the API: asv skips the suite
    create_app = None

from .common import Benchmark, db_helpers, scratch_dir

#: Rows in the history behind the API.
HISTORY_ROWS = 10_000
API = "/api/v1"


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
            db_helpers().seed_test_generations(session, HISTORY_ROWS)
        database.dispose()
        return str(directory)

    def setup(self, directory: str) -> None:
        super().setup()
        if create_app is None:
            raise NotImplementedError("dgx_music.api is missing")
        settings = Settings(
            data_dir=directory,
            output_dir=os.path.join(directory, "outputs"),
            default_model="synth",
            worker_concurrency=0,
        )
        self.client = TestClient(create_app(settings, start_workers=False))
        self.client.__enter__()
        listed = self.client.get(f"{API}/generations", params={"limit": 1}).json()
        self.some_id = listed["data"][0]["id"]
        self.body = {
            "prompt": "benchmark groove, 120 bpm in A minor",
            "duration": 4,
            "model": "synth",
        }

    def teardown(self, directory: str) -> None:
        self.client.__exit__(None, None, None)

    def time_get_status(self, directory: str) -> None:
        self.client.get(f"{API}/generations/{self.some_id}")

    def time_list_newest_50(self, directory: str) -> None:
        self.client.get(f"{API}/generations", params={"limit": 50})

    def time_submit(self, directory: str) -> None:
        self.client.post(f"{API}/generations", json=self.body)

    def time_rejected_submit(self, directory: str) -> None:
        """A 422 with field-level messages: the path every bad client request takes."""
        self.client.post(f"{API}/generations", json={"prompt": "", "duration": -1})

    def time_health(self, directory: str) -> None:
        self.client.get(f"{API}/health")
