"""The queue's prebuilt statements: every read of a job snapshot, the history's pages and
totals, the insert of a job and the prompt upsert.

Built once at import: SQLAlchemy then compiles each once and, given the same object again,
skips re-deriving its cache key and result map (half the cost of a one-row read). The column
list comes from :data:`dgx_music.jobs.records.JOB_COLUMNS`.
"""

from __future__ import annotations

import functools

from sqlalchemy import Insert, Integer, String, bindparam, func, insert, select

from dgx_music.jobs.records import JOB_COLUMNS
from dgx_music.storage.models import Generation, GenerationCount, Prompt, UTCDateTime

#: Every job snapshot read: one statement with the prompt joined in.
JOBS_WITH_PROMPT = select(*JOB_COLUMNS).join_from(
    Generation, Prompt, Generation.prompt_id == Prompt.id
)
#: One job by id.
JOB_BY_ID = JOBS_WITH_PROMPT.where(Generation.id == bindparam("job_id"))
_NEWEST_FIRST = (Generation.created_at.desc(), Generation.id.desc())
#: A page of the history, newest first.
JOBS_NEWEST = (
    JOBS_WITH_PROMPT.order_by(*_NEWEST_FIRST)
    .limit(bindparam("limit", type_=Integer))
    .offset(bindparam("offset", type_=Integer))
)
#: A page of one status, newest first (the status + created index).
JOBS_NEWEST_IN_STATUS = (
    JOBS_WITH_PROMPT.where(Generation.status == bindparam("status"))
    .order_by(*_NEWEST_FIRST)
    .limit(bindparam("limit", type_=Integer))
    .offset(bindparam("offset", type_=Integer))
)
# generation_counts is kept by triggers in the same transaction as every change to generations
# (migration 0002): summing its few rows replaces count(*) over the whole table.
#: How many generations there are.
TOTAL = select(func.coalesce(func.sum(GenerationCount.total), 0))
#: How many generations are in one status.
TOTAL_IN_STATUS = TOTAL.where(GenerationCount.status == bindparam("status", type_=String))
#: Generations per status, from the maintained counts.
COUNTS_BY_STATUS = select(GenerationCount.status, func.sum(GenerationCount.total)).group_by(
    GenerationCount.status
)
#: A new pending job (the values come with each execution).
INSERT_JOB = insert(Generation)


@functools.cache
def prompt_upsert(backend: str) -> Insert:
    """Insert a prompt or count one more use of it, returning its id: one statement,
    race-free on both backends (``sqlite`` or ``postgresql``), built once per backend."""
    if backend == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    return (
        dialect_insert(Prompt)
        .values(
            text=bindparam("text"),
            text_sha256=bindparam("text_sha256"),
            use_count=1,
            first_used_at=bindparam("first_used_at", type_=UTCDateTime()),
            last_used_at=bindparam("last_used_at", type_=UTCDateTime()),
        )
        .on_conflict_do_update(
            index_elements=[Prompt.text_sha256],
            set_={
                "use_count": Prompt.use_count + 1,
                "last_used_at": bindparam("used_again_at", type_=UTCDateTime()),
            },
        )
        .returning(Prompt.id)
    )
