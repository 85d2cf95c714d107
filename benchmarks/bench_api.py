"""REST API: request latency through the whole FastAPI stack, in process (no network).

The application runs against a seeded SQLite history without workers, so the figures are the
API's own cost (validation, database, serialisation), not the generation's.

Two drivers, same requests:

- ``ApiServerLoop`` calls the ASGI application on an event loop in the benchmark's own thread,
  the way uvicorn does once it has parsed a request: the figure is what the application costs
  a server per request (routing, middleware, validation, database, serialisation), and the
  one the API's latency targets are judged on.
- ``ApiRequests`` goes through Starlette's ``TestClient`` (httpx, then a blocking portal into
  an event loop on another thread), as scripts and tests call the app. On the 2-core runner
  that client alone costs about 1.4 ms for an empty FastAPI route, so it shows what a
  ``TestClient`` caller waits, not the API's own cost. Kept, unchanged, for its history.

And one below them, ``ApiRouteHandlers``: the status route's handler called as FastAPI calls it
once routing, validation and dependencies are done (lookup, response model, JSON). In a request
it is about a third of the time, so a 1.25x slower handler moves the request figures by only
about 1.08x, under the gate's factor; this figure moves by the whole 1.25x.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from functools import lru_cache
from typing import Any

try:
    from fastapi.testclient import TestClient

    from dgx_music.api import create_app
    from dgx_music.api.routes import generations
    from dgx_music.config import Settings
    from dgx_music.jobs.queue import JobManager
    from dgx_music.storage.database import get_database
except ImportError:  # an old commit without the API: asv skips the suite
    create_app = None

from .common import FastBenchmark, scratch_dir, seeded_sqlite_history

#: Rows in the history behind the API.
HISTORY_ROWS = 10_000
API = "/api/v1"
#: A valid submission (synth, so no weights are needed) and one rejected on two fields.
SUBMISSION = {"prompt": "benchmark groove, 120 bpm in A minor", "duration": 4, "model": "synth"}
REJECTED_SUBMISSION = {"prompt": "", "duration": -1}


def bench_app(directory: str) -> Any:
    """The application over the seeded history in ``directory``, synth only, no workers."""
    settings = Settings(
        data_dir=directory,
        output_dir=os.path.join(directory, "outputs"),
        default_model="synth",
        worker_concurrency=0,
    )
    return create_app(settings, start_workers=False)


@lru_cache(maxsize=1)
def api_client(directory: str) -> tuple[TestClient, str]:
    """One started application per process over the seeded history, and an id in it.

    Cached, because asv re-runs ``setup`` before every timed call: a new app per call would
    time a cold one.
    """
    client = TestClient(bench_app(directory))
    client.__enter__()  # runs the lifespan (database open, migrations); left open for the process
    listed = client.get(f"{API}/generations", params={"limit": 1}).json()
    return client, listed["data"][0]["id"]


class ServerLoop:
    """An ASGI application served on an event loop in this thread, as a server would serve it.

    Started once: the application's lifespan runs, then one long-lived task takes the requests
    in turn (so the application's thread pools and connections stay warm between calls, as on a
    running server). :meth:`request` hands that task one request and runs the loop until its
    response is complete: no sockets, no HTTP parsing, no second thread.
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self.loop = asyncio.new_event_loop()
        self.pending: asyncio.Queue[tuple[dict[str, Any], bytes, asyncio.Future[Any]]]
        self.pending = asyncio.Queue()
        self.lifespan = app.router.lifespan_context(app)
        self.loop.run_until_complete(self.lifespan.__aenter__())
        self.server = self.loop.create_task(self.serve())

    async def serve(self) -> None:
        while True:
            scope, body, done = await self.pending.get()
            messages: list[dict[str, Any]] = []

            async def receive(body: bytes = body) -> dict[str, Any]:
                return {"type": "http.request", "body": body, "more_body": False}

            async def send(message: dict[str, Any], messages: list = messages) -> None:
                messages.append(message)

            try:
                await self.app(scope, receive, send)
            except Exception as exc:  # surfaced to the caller, the server task lives on
                done.set_exception(exc)
            else:
                done.set_result(messages)

    def request(
        self, method: str, path: str, *, query: str = "", body: Any = None
    ) -> tuple[int, bytes]:
        """One request; returns the status and the body."""
        data = b"" if body is None else json.dumps(body).encode()
        headers = [(b"host", b"bench")]
        if body is not None:
            headers += [(b"content-type", b"application/json")]
            headers += [(b"content-length", str(len(data)).encode())]
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": query.encode(),
            "root_path": "",
            "headers": headers,
            "server": ("bench", 80),
            "client": ("127.0.0.1", 50000),
            "state": {},
        }
        done = self.loop.create_future()
        self.pending.put_nowait((scope, data, done))
        messages = self.loop.run_until_complete(done)
        return messages[0]["status"], b"".join(m.get("body", b"") for m in messages[1:])


class ApiRequests(FastBenchmark):
    """One request per method, through TestClient and the real middleware."""

    def setup_cache(self) -> str:
        """A seeded SQLite history; returns its directory."""
        if create_app is None:
            return str(scratch_dir())
        return str(seeded_sqlite_history(HISTORY_ROWS))

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


@lru_cache(maxsize=1)
def server_loop(directory: str) -> tuple[ServerLoop, str]:
    """One served application per process over the seeded history, and an id in it; every
    request a benchmark times is made once here and must answer what the benchmark names."""
    server = ServerLoop(bench_app(directory))
    _, listed = server.request("GET", f"{API}/generations", query="limit=1")
    some_id = json.loads(listed)["data"][0]["id"]
    expected = [
        ("GET", f"{API}/generations/{some_id}", "", None, 200),
        ("GET", f"{API}/generations", "limit=50", None, 200),
        ("POST", f"{API}/generations", "", SUBMISSION, 202),
        ("POST", f"{API}/generations", "", REJECTED_SUBMISSION, 422),
        ("GET", f"{API}/health", "", None, 200),
    ]
    for method, path, query, body, wanted in expected:
        got, _ = server.request(method, path, query=query, body=body)
        if got != wanted:
            raise RuntimeError(f"{method} {path}?{query} answered {got}, not {wanted}")
    return server, some_id


class ApiServerLoop(ApiRequests):
    """One request per method, the application called as a server calls it (see the module).

    The seeded history is :class:`ApiRequests`' (same ``setup_cache``, so asv builds it once).
    """

    def setup(self, directory: str) -> None:
        FastBenchmark.setup(self)  # not ApiRequests.setup: no TestClient here
        if create_app is None:
            raise NotImplementedError("dgx_music.api is missing")
        self.server, self.some_id = server_loop(directory)

    def time_get_status(self, directory: str) -> None:
        self.server.request("GET", f"{API}/generations/{self.some_id}")

    def time_list_newest_50(self, directory: str) -> None:
        self.server.request("GET", f"{API}/generations", query="limit=50")

    def time_submit(self, directory: str) -> None:
        self.server.request("POST", f"{API}/generations", body=SUBMISSION)

    def time_rejected_submit(self, directory: str) -> None:
        self.server.request("POST", f"{API}/generations", body=REJECTED_SUBMISSION)

    def time_health(self, directory: str) -> None:
        self.server.request("GET", f"{API}/health")


class ApiRouteHandlers(FastBenchmark):
    """The status route's handler alone, on the served application's database (see the module).

    The served application opens the database, and the handler gets the manager FastAPI's
    dependency would give it.
    """

    #: :class:`ApiRequests`' seeded history (the same function, so asv builds it once).
    setup_cache = ApiRequests.setup_cache

    def setup(self, directory: str) -> None:
        FastBenchmark.setup(self)
        if create_app is None or not hasattr(generations, "read_generation"):
            raise NotImplementedError("the status route's handler is missing")
        server, some_id = server_loop(directory)
        settings = server.app.state.settings
        self.manager = JobManager(get_database(settings), settings=settings)
        self.some_id = uuid.UUID(some_id)
        response = generations.read_generation(self.some_id, self.manager)
        if response.status_code != 200 or some_id.encode() not in response.body:
            raise RuntimeError(f"read_generation answered {response.status_code}")

    def time_read_generation(self, directory: str) -> None:
        generations.read_generation(self.some_id, self.manager)
