"""``/health``, ``/metrics``, ``/models``, ``/info`` and CORS."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

from dgx_music.api import create_app
from dgx_music.api.config import ApiSettings
from dgx_music.config import get_settings
from dgx_music.gpu import GpuStatus
from tests.api.helpers import API, synth_body

#: One sample line of the Prometheus text format: name, optional labels, value.
SAMPLE = re.compile(
    r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*",?)*\})? '
    r"(-?[0-9.e+-]+|\+Inf|-Inf|NaN)$"
)


def metric_values(text: str) -> dict[str, float]:
    values = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        assert SAMPLE.match(line), line
        name, value = line.rsplit(" ", 1)
        values[name] = float(value)
    return values


def test_health_reports_database_engine_queue_and_workers(
    database: Any, idle_client: TestClient
) -> None:
    for _ in range(2):
        idle_client.post(f"{API}/generations", json=synth_body())

    response = idle_client.get(f"{API}/health")

    assert response.status_code == 200
    health = response.json()
    assert health["status"] in {"ok", "degraded"}
    assert health["database"] == {"ok": True, "backend": database.backend, "error": None}
    assert health["engine"]["device"] == "cpu"
    assert health["engine"]["default_model"] == get_settings().default_model
    assert health["queue"] == {"depth": 2, "processing": 0}
    assert health["workers"] == {"configured": 0, "running": False}


def test_health_shows_running_workers(client: TestClient) -> None:
    assert client.get(f"{API}/health").json()["workers"] == {"configured": 1, "running": True}


@pytest.fixture
def unreachable_database(monkeypatch: pytest.MonkeyPatch) -> TestClient:
    # Nothing listens on port 9 of the loopback interface: connections are refused at once.
    monkeypatch.setenv("DGX_MUSIC_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:9/none")
    get_settings.cache_clear()
    with TestClient(create_app(start_workers=False, api_settings=ApiSettings())) as client:
        yield client


def test_health_is_503_when_the_database_is_down(unreachable_database: TestClient) -> None:
    response = unreachable_database.get(f"{API}/health")

    assert response.status_code == 503
    health = response.json()
    assert health["status"] == "unavailable"
    assert health["database"]["ok"] is False
    assert "127.0.0.1:9" in health["database"]["error"]
    assert health["queue"] == {"depth": None, "processing": None}


def test_routes_answer_503_when_the_database_is_down(unreachable_database: TestClient) -> None:
    submitted = unreachable_database.post(f"{API}/generations", json=synth_body())
    listed = unreachable_database.get(f"{API}/generations")
    metrics = unreachable_database.get(f"{API}/metrics")

    for response in (submitted, listed):
        assert response.status_code == 503
        assert response.json()["error"] == "service_unavailable"
        assert response.headers["retry-after"] == "5"
    assert metrics.status_code == 200
    assert metric_values(metrics.text)["dgx_music_database_up"] == 0


def test_workers_wait_for_the_database(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DGX_MUSIC_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:9/none")
    get_settings.cache_clear()
    app = create_app(start_workers=True, api_settings=ApiSettings())

    with TestClient(app) as client:
        deadline = time.monotonic() + 10
        while client.get(f"{API}/health").json()["workers"]["running"]:
            assert time.monotonic() < deadline, "the workers did not notice the database is down"
            time.sleep(0.05)
        assert client.get(f"{API}/health").json()["workers"]["configured"] == 1
    assert not app.state.worker_pool.running


def test_metrics_count_jobs_and_generation_time(
    client: TestClient, completed: dict[str, Any]
) -> None:
    client.post(f"{API}/generations", json=synth_body())  # may still be pending or processing

    response = client.get(f"{API}/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    values = metric_values(response.text)
    assert values["dgx_music_database_up"] == 1
    assert values['dgx_music_jobs{status="completed"}'] >= 1
    assert (
        sum(
            values[f'dgx_music_jobs{{status="{status}"}}']
            for status in ("pending", "processing", "completed", "failed", "cancelled")
        )
        == 2
    )
    assert values["dgx_music_queue_depth"] == values['dgx_music_jobs{status="pending"}']
    assert values["dgx_music_workers"] == 1
    assert values["dgx_music_generation_seconds_count"] >= 1
    assert values['dgx_music_generation_seconds_bucket{le="+Inf"}'] >= 1
    assert values["dgx_music_generation_seconds_sum"] > 0
    assert values["dgx_music_job_seconds_count"] >= 1
    assert values['dgx_music_worker_jobs_total{outcome="completed"}'] >= 1
    assert "# TYPE dgx_music_generation_seconds histogram" in response.text


#: Every metric family a scrape shows on a machine without a GPU, by the name dashboards and
#: alerts use (``*_created`` are prometheus_client's creation times of the counter and the
#: histograms). Renaming one breaks their queries: change this set only on purpose.
METRIC_FAMILIES = {
    "dgx_music_info",
    "dgx_music_database_up",
    "dgx_music_jobs",
    "dgx_music_queue_depth",
    "dgx_music_workers",
    "dgx_music_worker_jobs_total",
    "dgx_music_worker_jobs_created",
    "dgx_music_generation_seconds",
    "dgx_music_generation_seconds_created",
    "dgx_music_job_seconds",
    "dgx_music_job_seconds_created",
}


def test_metric_family_names_stay_the_same(client: TestClient, completed: dict[str, Any]) -> None:
    text = client.get(f"{API}/metrics").text
    families = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}
    assert families == METRIC_FAMILIES


def test_each_application_counts_in_its_own_registry(
    client: TestClient, completed: dict[str, Any]
) -> None:
    # A second app in the same process starts from zero: no shared global registry.
    with TestClient(create_app(start_workers=False, api_settings=ApiSettings())) as other:
        fresh = metric_values(other.get(f"{API}/metrics").text)
    busy = metric_values(client.get(f"{API}/metrics").text)
    assert busy['dgx_music_worker_jobs_total{outcome="completed"}'] >= 1
    assert fresh['dgx_music_worker_jobs_total{outcome="completed"}'] == 0
    assert fresh["dgx_music_generation_seconds_count"] == 0


def test_metrics_show_gpu_memory_when_present(
    idle_client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    gpu = GpuStatus(index=0, name='NVIDIA "GB10"', memory_total_mb=1024.0, memory_used_mb=256.0)
    monkeypatch.setattr("dgx_music.api.status.gpu_status", lambda: [gpu])

    values = metric_values(idle_client.get(f"{API}/metrics").text)

    labels = 'gpu="0",name="NVIDIA \\"GB10\\""'
    assert values[f"dgx_music_gpu_memory_used_bytes{{{labels}}}"] == 256 * 1024 * 1024
    assert values[f"dgx_music_gpu_memory_total_bytes{{{labels}}}"] == 1024 * 1024 * 1024


def test_models_list_says_what_is_installed(idle_client: TestClient) -> None:
    models = idle_client.get(f"{API}/models").json()

    by_name = {model["name"]: model for model in models["data"]}
    assert models["count"] == len(models["data"])
    assert by_name["synth"] == {
        "name": "synth",
        "kind": "synth",
        "available": True,
        "default": False,
    }
    assert by_name["tiny"]["available"] is True
    assert models["default_model"] == get_settings().default_model
    assert by_name[models["default_model"]]["default"] is True


def test_info_states_the_limits(idle_client: TestClient) -> None:
    info = idle_client.get(f"{API}/info").json()

    assert info["max_duration"] == 300
    assert info["context_seconds"] == 12
    assert info["max_continue_seconds"] == 300
    assert info["max_prompt_length"] == 1000
    assert info["max_seed"] == 2**32 - 1
    assert info["max_body_bytes"] == 65536
    assert info["auth_required"] is False


def test_cors_is_off_unless_configured(make_client: Any) -> None:
    origin = {"Origin": "http://elsewhere.example"}
    closed = make_client()
    opened = make_client(cors_origins=["http://elsewhere.example"])

    assert "access-control-allow-origin" not in closed.get(f"{API}/info", headers=origin).headers
    allowed = opened.get(f"{API}/info", headers=origin)
    assert allowed.headers["access-control-allow-origin"] == "http://elsewhere.example"
    preflight = opened.options(
        f"{API}/generations",
        headers={**origin, "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code == 200


# --- the fast request path ----------------------------------------------------------------------


def test_submission_model_check_agrees_with_the_model_list(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Submissions look only for the named model's files; that must answer exactly what the full
    # scan behind GET /models answers, installed or not.
    from dgx_music.api.service import model_installed
    from dgx_music.generation.engine import MusicEngine

    model_dir = tmp_path / "models"
    (model_dir / "musicgen-small").mkdir(parents=True)
    (model_dir / "musicgen-small" / "config.json").write_text('{"model_type": "musicgen"}')
    (model_dir / "musicgen-small" / "model.safetensors").write_bytes(b"weights")
    monkeypatch.setenv("DGX_MUSIC_MODEL_DIR", str(model_dir))
    get_settings.cache_clear()
    engine = MusicEngine(get_settings())
    listed = {model.name: model.available_offline for model in engine.available_models()}
    assert listed["facebook/musicgen-small"] is True
    assert listed["facebook/musicgen-large"] is False
    assert {name: model_installed(name, get_settings().model_dir) for name in listed} == listed


def test_generation_bodies_match_the_response_schema(idle_client: TestClient) -> None:
    # The generation routes serialise with pydantic directly, not through response_model:
    # each body must still validate against the schema the routes declare.
    from dgx_music.api.schemas import GenerationPublic, GenerationsPublic

    created = idle_client.post(f"{API}/generations", json=synth_body())
    assert created.status_code == 202
    assert created.headers["content-type"] == "application/json"
    assert created.headers["location"] == f"{API}/generations/{created.json()['id']}"
    GenerationPublic.model_validate(created.json())
    read = idle_client.get(created.headers["location"])
    assert read.json() == created.json()
    GenerationPublic.model_validate(read.json())
    listed = idle_client.get(f"{API}/generations", params={"limit": 5})
    assert GenerationsPublic.model_validate(listed.json()).count == 1
    assert listed.json()["data"] == [created.json()]


def test_nvml_is_started_once_and_a_failure_is_remembered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import pynvml

    from dgx_music import gpu

    starts: list[int] = []

    def failing_init() -> None:
        starts.append(1)
        raise pynvml.NVMLError(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)

    monkeypatch.setattr(pynvml, "nvmlInit", failing_init)
    monkeypatch.setattr(gpu, "_nvml_started", False)
    monkeypatch.setattr(gpu, "_nvml_failed_at", None)
    assert gpu.gpu_status() == []
    assert gpu.gpu_status() == []
    assert starts == [1]
    # After the retry interval NVML is tried again (a driver loaded later is found).
    monkeypatch.setattr(gpu, "NVML_RETRY_SECONDS", 0.0)
    assert gpu.gpu_status() == []
    assert starts == [1, 1]
