"""``/generations``: submit, follow, list, download, waveform and delete, on both databases."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from dgx_music.audio.calibration import UNCERTAIN_BELOW
from dgx_music.config import get_settings
from dgx_music.jobs.queue import JobManager
from dgx_music.jobs.records import JobOutput
from tests.api.helpers import API, synth_body, wait_for_job
from tests.utils.db_helpers import synth_request


def submit(client: TestClient, **changes: Any) -> dict[str, Any]:
    response = client.post(f"{API}/generations", json=synth_body(**changes))
    assert response.status_code == 202, response.text
    return response.json()


# --- submitting and following -------------------------------------------------------------


def test_submit_answers_202_with_the_job_and_its_location(idle_client: TestClient) -> None:
    response = idle_client.post(f"{API}/generations", json=synth_body(seed=11))

    assert response.status_code == 202
    job = response.json()
    assert response.headers["location"] == f"{API}/generations/{job['id']}"
    assert job["status"] == "pending"
    assert job["prompt"] == synth_body()["prompt"]
    assert (job["model"], job["duration"], job["seed"]) == ("synth", 1.0, 11)
    assert job["progress"] == 0.0
    assert job["audio"] is None and job["metadata"] is None and job["error"] is None
    assert idle_client.get(response.headers["location"]).json()["id"] == job["id"]


def test_submitted_job_completes_with_audio_timings_and_metadata(
    completed: dict[str, Any],
) -> None:
    job = completed
    assert job["progress"] == 1.0
    assert job["attempts"] == 1
    assert job["device"] == "cpu"
    assert job["created_at"] <= job["started_at"] <= job["completed_at"]
    assert job["generation_seconds"] > 0
    audio = job["audio"]
    assert audio["url"] == f"{API}/generations/{job['id']}/audio"
    assert audio["media_type"] == "audio/wav"
    assert (audio["sample_rate"], audio["channels"]) == (32_000, 2)
    assert audio["duration"] == pytest.approx(1.0, abs=0.01)
    assert audio["size_bytes"] > 100_000
    metadata = job["metadata"]
    assert metadata["key"] == "A minor"
    assert metadata["tempo_bpm"] > 0  # a 1 s clip is too short to pin the tempo down
    assert metadata["lufs"] == pytest.approx(-16.0, abs=0.5)
    assert metadata["true_peak_dbtp"] <= -1.0
    assert metadata["details"]["reported"] == {"tempo_bpm": 120.0, "key": "A minor"}
    # The confidences, and the flags that say which value is a guess.
    details = metadata["details"]
    assert metadata["flags"] == details["flags"]
    for field in ("tempo", "key"):
        confidence = metadata[f"{field}_confidence"]
        assert confidence == details[f"{field}_confidence"] and 0.0 <= confidence <= 1.0
        assert (f"{field}_uncertain" in metadata["flags"]) is (confidence < UNCERTAIN_BELOW)


def test_a_seed_is_chosen_when_none_is_given(idle_client: TestClient) -> None:
    body = synth_body()
    del body["seed"]

    job = idle_client.post(f"{API}/generations", json=body).json()

    assert isinstance(job["seed"], int)


@pytest.mark.parametrize(
    "prompt",
    [
        "Café ☕ — lo-fi at 84 bpm, naïve façade",
        "日本の祭り太鼓とシンセ",
        "guitar 🎸 and drums 🥁, 𝄞 clef",
        "<script>alert('x')</script> & \"quotes\" 'single' \\backslash% _under_ ; DROP TABLE",
        "line one\nline two\ttabbed",
        "עברית ועربية mixed RTL",
    ],
)
def test_special_characters_and_unicode_are_stored_verbatim(
    idle_client: TestClient, prompt: str
) -> None:
    job = submit(idle_client, prompt=prompt)

    assert job["prompt"] == prompt
    assert idle_client.get(f"{API}/generations/{job['id']}").json()["prompt"] == prompt
    listed = idle_client.get(f"{API}/generations").json()["data"]
    assert [item["prompt"] for item in listed] == [prompt]


def test_surrounding_whitespace_is_removed_from_the_prompt(idle_client: TestClient) -> None:
    assert submit(idle_client, prompt="  \n padded prompt \t ")["prompt"] == "padded prompt"


# --- reading ------------------------------------------------------------------------------


def test_unknown_id_is_404(idle_client: TestClient) -> None:
    unknown = uuid.uuid4()
    for path in ("", "/audio", "/waveform"):
        response = idle_client.get(f"{API}/generations/{unknown}{path}")
        assert response.status_code == 404, path
        assert response.json()["error"] == "not_found"
        assert str(unknown) in response.json()["message"]
    assert idle_client.delete(f"{API}/generations/{unknown}").status_code == 404


@pytest.mark.parametrize("bad_id", ["nope", "123", "3f6c1f8e-8d0a-4c53-9a57", "%00", "x" * 300])
def test_malformed_id_is_422_naming_the_field(idle_client: TestClient, bad_id: str) -> None:
    for method, path in [
        ("GET", ""),
        ("GET", "/audio"),
        ("GET", "/waveform"),
        ("DELETE", ""),
    ]:
        response = idle_client.request(method, f"{API}/generations/{bad_id}{path}")
        assert response.status_code == 422, (method, path, response.text)
        assert [item["field"] for item in response.json()["detail"]] == ["generation_id"]


@pytest.mark.parametrize(
    "path", ["..%2F..%2Fetc%2Fpasswd/audio", "../../../etc/passwd", "%2e%2e/%2e%2e/audio"]
)
def test_path_tricks_are_refused(idle_client: TestClient, path: str) -> None:
    response = idle_client.get(f"{API}/generations/{path}")

    assert response.status_code in {404, 422}
    assert "root:" not in response.text


def test_list_is_newest_first_and_paginated(idle_client: TestClient) -> None:
    ids = [submit(idle_client, prompt=f"prompt {index}")["id"] for index in range(5)]

    page = idle_client.get(f"{API}/generations").json()
    assert [item["id"] for item in page["data"]] == ids[::-1]
    assert (page["count"], page["limit"], page["offset"]) == (5, 20, 0)

    first = idle_client.get(f"{API}/generations", params={"limit": 2}).json()
    second = idle_client.get(f"{API}/generations", params={"limit": 2, "offset": 2}).json()
    last = idle_client.get(f"{API}/generations", params={"limit": 2, "offset": 4}).json()
    walked = [item["id"] for page in (first, second, last) for item in page["data"]]
    assert walked == ids[::-1]
    assert first["count"] == second["count"] == last["count"] == 5
    assert idle_client.get(f"{API}/generations", params={"offset": 99}).json()["data"] == []


def test_list_filters_by_status(idle_client: TestClient) -> None:
    kept = [submit(idle_client, prompt=f"keep {index}")["id"] for index in range(2)]
    cancelled = submit(idle_client, prompt="cancel me")["id"]
    assert idle_client.delete(f"{API}/generations/{cancelled}").status_code == 200

    pending = idle_client.get(f"{API}/generations", params={"status": "pending"}).json()
    gone = idle_client.get(f"{API}/generations", params={"status": "cancelled"}).json()

    assert [item["id"] for item in pending["data"]] == kept[::-1]
    assert pending["count"] == 2
    assert [item["id"] for item in gone["data"]] == [cancelled]
    assert idle_client.get(f"{API}/generations", params={"status": "failed"}).json()["count"] == 0


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"offset": -1}, "offset"),
        ({"offset": 2**63}, "offset"),
        ({"status": "bogus"}, "status"),
    ],
)
def test_list_parameters_are_bounded(
    idle_client: TestClient, params: dict[str, Any], field: str
) -> None:
    response = idle_client.get(f"{API}/generations", params=params)

    assert response.status_code == 422
    assert [item["field"] for item in response.json()["detail"]] == [field]


# --- audio --------------------------------------------------------------------------------


def test_audio_is_served_as_wav_with_an_etag(client: TestClient, completed: dict[str, Any]) -> None:
    response = client.get(completed["audio"]["url"])

    assert response.status_code == 200
    assert response.headers["content-type"] == "audio/wav"
    assert response.headers["accept-ranges"] == "bytes"
    assert response.headers["etag"] == f'"{completed["audio"]["sha256"]}"'
    assert response.headers["content-disposition"].startswith("inline")
    assert int(response.headers["content-length"]) == completed["audio"]["size_bytes"]
    assert response.content[:4] == b"RIFF" and response.content[8:12] == b"WAVE"
    assert hashlib.sha256(response.content).hexdigest() == completed["audio"]["sha256"]

    download = client.get(completed["audio"]["url"], params={"download": True})
    assert download.headers["content-disposition"].startswith("attachment")


def test_audio_ranges(client: TestClient, completed: dict[str, Any]) -> None:
    url = completed["audio"]["url"]
    whole = client.get(url).content
    size = len(whole)

    head = client.get(url, headers={"Range": "bytes=0-99"})
    assert head.status_code == 206
    assert head.headers["content-range"] == f"bytes 0-99/{size}"
    assert head.content == whole[:100]

    tail = client.get(url, headers={"Range": "bytes=-50"})
    assert tail.status_code == 206
    assert tail.content == whole[-50:]

    rest = client.get(url, headers={"Range": f"bytes={size - 10}-"})
    assert rest.status_code == 206
    assert rest.content == whole[-10:]

    beyond = client.get(url, headers={"Range": f"bytes={size}-"})
    assert beyond.status_code == 416
    assert beyond.headers["content-range"] == f"bytes */{size}"

    stale = client.get(url, headers={"Range": "bytes=0-9", "If-Range": '"not-the-etag"'})
    assert stale.status_code == 200 and stale.content == whole


@pytest.mark.parametrize("header", ["bytes=abc", "bytes=9-3", "items=0-1", "bytes=", "bytes=-"])
def test_malformed_ranges_are_client_errors(
    client: TestClient, completed: dict[str, Any], header: str
) -> None:
    response = client.get(completed["audio"]["url"], headers={"Range": header})

    # 400, and none of the file: a malformed range is neither served whole nor in part.
    assert response.status_code == 400, (header, response.status_code)
    assert not response.content.startswith(b"RIFF")
    assert "content-range" not in response.headers


def test_a_range_beyond_the_file_is_416(client: TestClient, completed: dict[str, Any]) -> None:
    size = completed["audio"]["size_bytes"]
    assert len(client.get(completed["audio"]["url"]).content) == size
    response = client.get(
        completed["audio"]["url"], headers={"Range": f"bytes={size}-{size + 100}"}
    )
    assert response.status_code == 416
    assert response.headers["content-range"] == f"bytes */{size}"
    assert response.content == b""


def test_audio_revalidation_with_if_none_match(
    client: TestClient, completed: dict[str, Any]
) -> None:
    url = completed["audio"]["url"]
    etag = f'"{completed["audio"]["sha256"]}"'

    for header in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        response = client.get(url, headers={"If-None-Match": header})
        assert response.status_code == 304, header
        assert response.content == b""
        assert response.headers["etag"] == etag
    assert client.get(url, headers={"If-None-Match": '"other"'}).status_code == 200


def test_audio_of_an_unfinished_job_is_409(idle_client: TestClient) -> None:
    job = submit(idle_client)
    for path in ("/audio", "/waveform"):
        response = idle_client.get(f"{API}/generations/{job['id']}{path}")
        assert response.status_code == 409
        assert response.json()["error"] == "conflict"
        assert "pending" in response.json()["message"]


def test_missing_audio_file_is_404(client: TestClient, completed: dict[str, Any]) -> None:
    path = next(get_settings().output_dir.rglob(f"{completed['id']}.wav"))
    path.unlink()

    response = client.get(completed["audio"]["url"])

    assert response.status_code == 404
    assert "db check" in response.json()["message"]


def test_files_outside_the_outputs_directory_are_never_served(
    database: Any, idle_client: TestClient, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.wav"
    secret.write_bytes(b"RIFF-not-yours")
    manager = JobManager(database)
    job_id = str(uuid.uuid4())
    manager.record_completed(
        job_id,
        synth_request(),
        JobOutput(
            file_path="../secret.wav",
            file_size=14,
            sha256=hashlib.sha256(b"RIFF-not-yours").hexdigest(),
            sample_rate=32_000,
            channels=2,
            actual_duration=0.5,
            device="cpu",
            seed=1,
            generation_seconds=0.1,
        ),
        created_at=manager.clock(),
        started_at=manager.clock(),
        worker_id="test",
    )

    for path in ("/audio", "/waveform"):
        response = idle_client.get(f"{API}/generations/{job_id}{path}")
        assert response.status_code == 404
        assert b"not-yours" not in response.content


# --- waveform -----------------------------------------------------------------------------


def test_waveform_peaks(client: TestClient, completed: dict[str, Any]) -> None:
    response = client.get(completed["audio"]["waveform_url"], params={"points": 64})

    assert response.status_code == 200
    wave = response.json()
    assert wave["id"] == completed["id"]
    assert wave["points"] == len(wave["minimum"]) == len(wave["maximum"]) == 64
    assert wave["duration"] == pytest.approx(1.0, abs=0.01)
    assert all(
        -1 <= low <= high <= 1 for low, high in zip(wave["minimum"], wave["maximum"], strict=True)
    )
    assert max(wave["maximum"]) > 0.1

    default = client.get(completed["audio"]["waveform_url"]).json()
    assert default["points"] == 800
    for points in (8, 100_000):
        bad = client.get(completed["audio"]["waveform_url"], params={"points": points})
        assert bad.status_code == 422


# --- deleting -----------------------------------------------------------------------------


def test_delete_cancels_a_pending_job_then_deletes_it(idle_client: TestClient) -> None:
    job = submit(idle_client)
    url = f"{API}/generations/{job['id']}"

    cancelled = idle_client.delete(url)
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    assert idle_client.get(url).json()["status"] == "cancelled"

    deleted = idle_client.delete(url)
    assert deleted.status_code == 204
    assert deleted.content == b""
    assert idle_client.get(url).status_code == 404


def test_delete_removes_a_finished_job_and_its_file(
    client: TestClient, completed: dict[str, Any]
) -> None:
    url = f"{API}/generations/{completed['id']}"
    path = next(get_settings().output_dir.rglob(f"{completed['id']}.wav"))

    assert client.delete(url).status_code == 204

    assert not path.exists()
    assert client.get(url).status_code == 404
    assert client.get(completed["audio"]["url"]).status_code == 404
    assert client.get(f"{API}/generations").json()["count"] == 0


def test_delete_of_a_processing_job_is_409(database: Any, idle_client: TestClient) -> None:
    job = submit(idle_client)
    claimed = JobManager(database).claim("test-worker")
    assert claimed is not None and claimed.id == job["id"]

    response = idle_client.delete(f"{API}/generations/{job['id']}")

    assert response.status_code == 409
    assert response.json()["error"] == "conflict"
    assert idle_client.get(f"{API}/generations/{job['id']}").json()["status"] == "processing"


def test_progress_is_reported_while_processing(database: Any, idle_client: TestClient) -> None:
    job = submit(idle_client)
    manager = JobManager(database)
    manager.claim("test-worker")
    manager.heartbeat(job["id"], "test-worker", 0.42)

    shown = idle_client.get(f"{API}/generations/{job['id']}").json()

    assert shown["status"] == "processing"
    assert shown["progress"] == pytest.approx(0.42)
    assert shown["started_at"] is not None


def test_jobs_complete_in_submission_order(client: TestClient) -> None:
    ids = [submit(client, prompt=f"order {index}", duration=0.5)["id"] for index in range(3)]

    jobs = [wait_for_job(client, job_id) for job_id in ids]

    assert [job["status"] for job in jobs] == ["completed"] * 3
    started = [job["started_at"] for job in jobs]
    assert started == sorted(started)
