"""Seeded histories: the ``generations`` table filled fast with a chosen mix of statuses.

The benchmarks seed 100,000 rows with :func:`bulk_seed_generations` (one multi-row INSERT per
batch); the tests use it too (``tests.utils.db_helpers``). It lives with the suite because asv
runs it against older commits as well: ``dgx_music`` is imported inside the functions, and a
column an older table lacks is left out of its rows.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

#: Rows per INSERT batch when seeding.
SEED_BATCH = 5_000
#: Default mix of statuses in a seeded table: a mature history with a small live queue.
DEFAULT_STATUS_DISTRIBUTION: Mapping[str, float] = {
    "completed": 0.85,
    "failed": 0.05,
    "cancelled": 0.02,
    "pending": 0.06,
    "processing": 0.02,
}


def _check_distribution(status_distribution: Mapping[Any, float]) -> dict[Any, float]:
    from dgx_music.storage.models import GenerationStatus

    weights: dict[Any, float] = {}
    for status, weight in status_distribution.items():
        try:
            key = GenerationStatus(status)
        except ValueError:
            known = ", ".join(member.value for member in GenerationStatus)
            raise ValueError(
                f"status_distribution: unknown status {status!r} (one of {known})"
            ) from None
        if not weight >= 0:
            raise ValueError(f"status_distribution[{key.value}]: weight {weight!r} must be >= 0")
        weights[key] = float(weight)
    if not weights or sum(weights.values()) <= 0:
        raise ValueError("status_distribution: at least one weight must be > 0")
    return weights


def bulk_seed_generations(
    session: Session,
    count: int,
    status_distribution: Mapping[Any, float] | None = None,
    *,
    distinct_prompts: int = 100,
    start: datetime | None = None,
    seed: int = 0,
) -> list[str]:
    """Insert ``count`` generation rows with statuses drawn from ``status_distribution``.

    Rows are one second apart from ``start``; completed ones carry plausible file facts (no
    file is written, so ``db check`` would report them missing). The caller commits.

    Parameters
    ----------
    session
        An open session (in a transaction).
    count
        Rows to insert.
    status_distribution
        Status -> weight; :data:`DEFAULT_STATUS_DISTRIBUTION` by default.
    distinct_prompts
        How many prompt rows the generations share.
    start
        ``created_at`` of the first row, UTC; a fixed date by default (seeded data only grows).

    Returns
    -------
    list of str
        The ids, in insertion order.
    """
    if count < 0:
        raise ValueError(f"count: {count} rows; must be >= 0")
    if distinct_prompts < 1:
        raise ValueError(f"distinct_prompts: {distinct_prompts}; must be >= 1")
    from sqlalchemy import insert

    from dgx_music.storage.models import Prompt, prompt_digest

    weights = _check_distribution(status_distribution or DEFAULT_STATUS_DISTRIBUTION)
    statuses = list(weights)
    rng = random.Random(seed)
    start = start or datetime(2025, 1, 1, tzinfo=UTC)
    suffix = uuid.UUID(int=rng.getrandbits(128)).hex[:8]
    prompt_ids = []
    for index in range(distinct_prompts):
        prompt_text = f"seeded prompt {index} ({suffix})"
        prompt_ids.append(
            session.execute(
                insert(Prompt)
                .values(
                    text=prompt_text,
                    text_sha256=prompt_digest(prompt_text),
                    use_count=0,
                    first_used_at=start,
                    last_used_at=start,
                )
                .returning(Prompt.id)
            ).scalar_one()
        )
    drawn = rng.choices(statuses, weights=[weights[status] for status in statuses], k=count)
    ids: list[str] = []
    rows: list[dict[str, Any]] = []
    for index, status in enumerate(drawn):
        created = start + timedelta(seconds=index)
        job_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        ids.append(job_id)
        rows.append(_seed_row(job_id, status, created, rng.choice(prompt_ids), rng))
        if len(rows) >= SEED_BATCH:
            _insert_rows(session, rows)
            rows = []
    if rows:
        _insert_rows(session, rows)
    return ids


def _insert_rows(session: Session, rows: list[dict[str, Any]]) -> None:
    from sqlalchemy import insert

    # Core, not the ORM's bulk insert (which split the rows into thousands of single-row
    # statements), and RETURNING so SQLAlchemy sends multi-row INSERT ... VALUES pages: the
    # maintained-count triggers fire once per statement on PostgreSQL, and 100,000 single-row
    # statements took minutes.
    from dgx_music.storage.models import Generation

    table = Generation.__table__
    columns = {attr.key: attr.columns[0].name for attr in Generation.__mapper__.column_attrs}
    # A commit whose table lacks a column simply does not get it (the benchmarks run old ones).
    by_column = [
        {columns[key]: value for key, value in row.items() if key in columns} for row in rows
    ]
    session.execute(insert(table).returning(table.c.id), by_column).all()


def _seed_row(
    job_id: str, status: Any, created: datetime, prompt_id: int, rng: random.Random
) -> dict[str, Any]:
    from dgx_music.storage.files import relative_output_path
    from dgx_music.storage.models import GenerationStatus

    row: dict[str, Any] = {
        "id": job_id,
        "prompt_id": prompt_id,
        "model": "synth",
        "device": None,
        "duration": 8.0,
        "seed": rng.randrange(2**32),
        "temperature": 1.0,
        "top_k": 250,
        "top_p": 0.0,
        "guidance_scale": 3.0,
        "status": status,
        "attempts": 0,
        "worker_id": None,
        "lease_expires_at": None,
        "progress": 0.0,
        "created_at": created,
        "started_at": None,
        "completed_at": None,
        "generation_seconds": None,
        "file_path": None,
        "file_size": None,
        "sha256": None,
        "sample_rate": None,
        "channels": None,
        "actual_duration": None,
        "lufs": None,
        "true_peak": None,
        "tempo_bpm": None,
        "key": None,
        "audio_metadata": None,
        "error": None,
    }
    if status is not GenerationStatus.PENDING:
        row.update(attempts=1, started_at=created + timedelta(seconds=1), device="cpu")
    if status is GenerationStatus.PROCESSING:
        row.update(
            worker_id="seeded-worker",
            lease_expires_at=created + timedelta(days=3650),
            progress=0.5,
        )
    if status is GenerationStatus.COMPLETED:
        row.update(
            completed_at=created + timedelta(seconds=5),
            generation_seconds=4.0,
            file_path=relative_output_path(job_id, created).as_posix(),
            file_size=1_024_044,
            sha256=f"{rng.getrandbits(256):064x}",
            sample_rate=32_000,
            channels=2,
            actual_duration=8.0,
            lufs=-16.0,
            true_peak=-1.2,
            tempo_bpm=float(rng.randrange(60, 180)),
            key="A minor",
            audio_metadata={"tempo_bpm": 120.0, "key": "A minor"},
            progress=1.0,
        )
    if status is GenerationStatus.FAILED:
        row.update(completed_at=created + timedelta(seconds=2), error="seeded failure")
    if status is GenerationStatus.CANCELLED:
        row.update(completed_at=created + timedelta(seconds=2), error="cancelled")
    return row
