"""The job records and the rules of a job's moves, without a database."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from dgx_music.generation.request import GenerationRequest
from dgx_music.jobs.records import (
    COLUMN_NAMES,
    JOB_COLUMNS,
    REQUEST_FIELDS,
    Job,
    JobOutput,
    request_columns,
)
from dgx_music.jobs.transitions import lease_expired
from dgx_music.storage.models import Generation, GenerationStatus

EXPIRED_AT = datetime(2026, 12, 7, 9, 30, tzinfo=UTC)


def test_a_job_snapshot_holds_every_column_of_its_row():
    # A column added to the model and not to Job (or the other way) fails here, not in a query.
    columns = {column.key for column in Generation.__mapper__.column_attrs}
    fields = {COLUMN_NAMES.get(f.name, f.name) for f in dataclasses.fields(Job)} - {"prompt"}
    assert columns - {"prompt_id"} == fields
    assert [column.key for column in JOB_COLUMNS] == [f.name for f in dataclasses.fields(Job)]


def test_the_request_fields_are_what_a_request_holds():
    request = GenerationRequest(prompt="p", duration=2.0, model="synth", seed=3)
    assert set(REQUEST_FIELDS) == set(request.to_dict())
    assert "prompt" not in request_columns(request)
    job = Job(id="j", status=GenerationStatus.PENDING, created_at=EXPIRED_AT, **request.to_dict())
    assert job.request() == request


def test_an_output_writes_safe_values_under_the_column_names():
    output = JobOutput(
        file_path="2026/12/j.wav",
        file_size=10,
        sha256="0" * 64,
        sample_rate=32_000,
        channels=2,
        actual_duration=1.0,
        device="cpu",
        seed=1,
        generation_seconds=0.5,
        lufs=float("-inf"),
        tempo_bpm=float("nan"),
        metadata={"loudness_range": float("nan"), "nested": [1.0, float("inf")]},
    )
    values = output.column_values()
    assert set(values) == {COLUMN_NAMES.get(f.name, f.name) for f in dataclasses.fields(output)}
    assert values["lufs"] is None and values["tempo_bpm"] is None
    assert values["audio_metadata"] == {"loudness_range": None, "nested": [1.0, None]}


@pytest.mark.parametrize(
    ("attempts", "status", "words"),
    [
        (1, GenerationStatus.PENDING, "attempt 1 of 3 abandoned"),
        (2, GenerationStatus.PENDING, "attempt 2 of 3 abandoned"),
        (3, GenerationStatus.FAILED, "gave up after 3 attempts"),
        (4, GenerationStatus.FAILED, "gave up after 4 attempts"),
    ],
)
def test_an_expired_lease_requeues_until_the_attempts_run_out(
    attempts: int, status: GenerationStatus, words: str
):
    outcome = lease_expired(
        attempts=attempts, max_attempts=3, worker_id="w7", expired_at=EXPIRED_AT
    )
    assert outcome.status is status
    assert outcome.gave_up is (status is GenerationStatus.FAILED)
    assert words in outcome.error
    assert "w7" in outcome.error and "2026-12-07 09:30:00 UTC" in outcome.error
