"""A bounded load test: concurrent clients against uvicorn on 127.0.0.1, with a worker running.

10 clients send 500 status requests and 50 submissions between them, interleaved, while the
in-process worker generates the submitted jobs. Every answer must be a success; the p50/p99
latencies are printed (run with ``-s`` to see them) and held only to generous ceilings.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from dgx_music.api import create_app
from dgx_music.api.config import ApiSettings
from dgx_music.config import get_settings
from tests.api.helpers import API, live_server, synth_body

CLIENTS = 10
STATUS_REQUESTS = 500
SUBMISSIONS = 50
#: Whole run, seconds: a hung server fails the test instead of the CI job.
RUN_TIMEOUT = 120.0
#: Ceilings for the 99th percentile, seconds: blockers only, not performance targets.
STATUS_P99_CEILING = 2.0
SUBMIT_P99_CEILING = 5.0


@pytest.fixture
def server_url(
    database: Any, monkeypatch: pytest.MonkeyPatch, warm_metadata: None
) -> Iterator[str]:
    monkeypatch.setenv("DGX_MUSIC_POLL_SECONDS", "0.05")
    get_settings.cache_clear()
    app = create_app(get_settings(), start_workers=True, api_settings=ApiSettings())
    with live_server(app) as url:
        yield url


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


@pytest.mark.slow
def test_concurrent_status_requests_and_submissions(server_url: str, database: Any) -> None:
    lock = threading.Lock()
    job_ids: list[str] = []
    timings: dict[str, list[float]] = {"status": [], "submit": []}
    failures: list[str] = []
    deadline = time.monotonic() + RUN_TIMEOUT

    with httpx.Client(base_url=server_url, timeout=30) as seed_client:
        response = seed_client.post(f"{API}/generations", json=synth_body(duration=0.5))
        assert response.status_code == 202
        job_ids.append(response.json()["id"])

    def run_client(index: int) -> None:
        # 5 submissions and 50 status requests per client: a submission, then 10 status
        # requests, five times over.
        submissions = SUBMISSIONS // CLIENTS
        statuses = STATUS_REQUESTS // CLIENTS
        period = statuses // submissions + 1
        plan = [
            "submit" if step % period == 0 else "status" for step in range(statuses + submissions)
        ]
        with httpx.Client(base_url=server_url, timeout=30) as client:
            for step, kind in enumerate(plan):
                if time.monotonic() > deadline:
                    failures.append(f"client {index} ran out of time")
                    return
                started = time.perf_counter()
                if kind == "submit":
                    body = synth_body(prompt=f"load {index}-{step}", duration=0.5, seed=step)
                    response = client.post(f"{API}/generations", json=body)
                    expected = 202
                else:
                    with lock:
                        job_id = job_ids[(index * 7 + step) % len(job_ids)]
                    response = client.get(f"{API}/generations/{job_id}")
                    expected = 200
                elapsed = time.perf_counter() - started
                with lock:
                    timings[kind].append(elapsed)
                    if response.status_code != expected:
                        failures.append(f"{kind}: {response.status_code} {response.text[:200]}")
                    elif kind == "submit":
                        job_ids.append(response.json()["id"])

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
        list(pool.map(run_client, range(CLIENTS)))
    wall = time.perf_counter() - started

    assert failures == []
    assert len(timings["status"]) == STATUS_REQUESTS
    assert len(timings["submit"]) == SUBMISSIONS
    with httpx.Client(base_url=server_url, timeout=30) as client:
        listed = client.get(f"{API}/generations", params={"limit": 1}).json()
        assert listed["count"] == SUBMISSIONS + 1
        assert client.get(f"{API}/health").status_code == 200

    report = {
        kind: (statistics.median(values), percentile(values, 0.99), max(values))
        for kind, values in timings.items()
    }
    print(
        f"\nload [{database.backend}]: {CLIENTS} clients, {wall:.1f} s wall; "
        + "; ".join(
            f"{kind} n={len(timings[kind])} p50={p50 * 1000:.1f} ms p99={p99 * 1000:.1f} ms "
            f"max={worst * 1000:.1f} ms"
            for kind, (p50, p99, worst) in report.items()
        )
    )
    assert report["status"][1] < STATUS_P99_CEILING
    assert report["submit"][1] < SUBMIT_P99_CEILING
