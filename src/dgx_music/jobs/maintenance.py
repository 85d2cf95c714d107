"""Repairs of the generation history: the consistency check, clean-up and the counts rebuilt.

:class:`Maintenance` is a mix-in of :class:`~dgx_music.jobs.queue.JobManager`: the queue's
``db check``, ``db cleanup`` and ``db recount`` walk the output directory and the whole table,
which the queue's own work (submit, claim, heartbeat, finish) never does. It uses the manager's
``database``, ``settings``, ``clock``, ``output_dir``, ``recover_expired`` and ``_locked``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy import func, select, text, update

from dgx_music.jobs.records import Job
from dgx_music.jobs.transitions import check_transition
from dgx_music.storage import files
from dgx_music.storage.files import ConsistencyReport, FileRecord
from dgx_music.storage.models import Generation, GenerationCount, GenerationStatus

logger = logging.getLogger(__name__)

#: How long an orphan or stale temp file must have been left alone before ``db cleanup``
#: deletes it, seconds: a younger one may belong to a write that is about to be recorded.
CLEANUP_GRACE_SECONDS = 300.0
#: Rows read per round trip when walking the whole table.
SCAN_BATCH = 5_000


@dataclass(frozen=True)
class CleanupResult:
    """What ``db cleanup`` did (or, with ``dry_run``, would do)."""

    dry_run: bool
    requeued_or_failed: int
    removed_files: list[str]
    marked_missing: list[str]
    #: Problems left for a person: files that differ from their row, young orphans.
    left_alone: list[str]


class Maintenance:
    """``db check``, ``db cleanup``, ``db recount`` and what they read (a mix-in of
    :class:`~dgx_music.jobs.queue.JobManager`)."""

    def mark_file_missing(self, job_id: str) -> Job:
        """Fail a completed job whose file is gone, so no row points at a missing file."""
        with self.database.session(write=True) as session:
            row = self._locked(session, job_id)
            check_transition(job_id, row.status, GenerationStatus.FAILED)
            row.error = (
                f"the output file {row.file_path} disappeared after the job completed "
                "(found by db cleanup); submit the prompt again"
            )
            row.status = GenerationStatus.FAILED
            row.file_path = None
            session.flush()
            job = Job.from_row(row)
        logger.warning(
            "job %s: output file missing",
            job_id,
            extra={"action": "mark_missing", "job_id": job_id},
        )
        return job

    def counted_by_rows(self) -> dict[GenerationStatus, int]:
        """``count(*)`` of the table by status, the slow way: what the maintained counts
        (:meth:`counts_by_status`) must always equal. For ``db check`` and tests."""
        query = select(Generation.status, func.count()).group_by(Generation.status)
        counts = dict.fromkeys(GenerationStatus, 0)
        with self.database.read() as connection:
            for status, number in connection.execute(query):
                counts[GenerationStatus(status)] = int(number)
        return counts

    def file_records(self) -> Iterator[FileRecord]:
        """What every row says about its file, for the consistency check."""
        columns = (
            Generation.id,
            Generation.status,
            Generation.file_path,
            Generation.file_size,
            Generation.sha256,
            Generation.worker_id,
            Generation.lease_expires_at,
        )
        after = ""
        while True:
            query = select(*columns).order_by(Generation.id).limit(SCAN_BATCH)
            if after:
                query = query.where(Generation.id > after)
            with self.database.session() as session:
                rows = session.execute(query).all()
            for row in rows:
                yield FileRecord(*row)
            if len(rows) < SCAN_BATCH:
                return
            after = rows[-1].id

    def recount(self) -> dict[GenerationStatus, int]:
        """Rebuild the maintained counts from the rows and return them.

        The triggers keep ``generation_counts`` exact; this repairs it after something went
        around them (triggers disabled for a bulk load, a restore of one table). Writers wait
        for the few milliseconds it takes, so nothing changes between counting and writing.
        """
        with self.database.transaction(write=True) as connection:
            if self.database.backend == "postgresql":
                connection.execute(text("LOCK TABLE generations IN SHARE ROW EXCLUSIVE MODE"))
            rows = connection.execute(
                select(Generation.status, func.count()).group_by(Generation.status)
            )
            counts = dict.fromkeys(GenerationStatus, 0)
            for status, number in rows:
                counts[GenerationStatus(status)] = int(number)
            connection.execute(update(GenerationCount).values(total=0))
            for status, number in counts.items():
                connection.execute(
                    update(GenerationCount)
                    .where(GenerationCount.status == status.value, GenerationCount.shard == 0)
                    .values(total=number)
                )
        logger.warning("generation counts rebuilt from the rows", extra={"action": "recount"})
        return counts

    def check(self, *, verify_hashes: bool = True) -> ConsistencyReport:
        """Compare the output directory with the table (see :func:`files.audit_outputs`)."""
        return files.audit_outputs(
            self.output_dir,
            self.file_records(),
            now=self.clock(),
            verify_hashes=verify_hashes,
        )

    def cleanup(
        self, *, dry_run: bool = False, grace_seconds: float = CLEANUP_GRACE_SECONDS
    ) -> CleanupResult:
        """Repair what can be repaired safely.

        Expired leases are recovered; orphan and stale temp files older than
        ``grace_seconds`` are deleted; completed rows whose file is gone are marked failed.
        Files that differ from their row are reported, never deleted: a completed row's file
        is never removed.
        """
        report = self.check()
        removed: list[str] = []
        marked: list[str] = []
        left: list[str] = []
        recovered = len(report.stuck_jobs)
        if not dry_run and report.stuck_jobs:
            recovered = self.recover_expired()
        for item in [*report.orphan_files, *report.stale_temp_files]:
            if item.age_seconds < grace_seconds:
                left.append(
                    f"{item.relative_path} is only {item.age_seconds:.0f} s old; "
                    "it may belong to a write in progress"
                )
                continue
            if dry_run or files.remove_output_file(self.output_dir / item.relative_path):
                removed.append(item.relative_path)
        for record in report.missing_files:
            if not dry_run:
                self.mark_file_missing(record.id)
            marked.append(record.id)
        left += [
            f"generation {item.record.id}: {item.field} differs from the database; "
            "inspect the file, then delete the job or restore the file"
            for item in report.mismatches
        ]
        return CleanupResult(
            dry_run=dry_run,
            requeued_or_failed=recovered,
            removed_files=removed,
            marked_missing=marked,
            left_alone=left,
        )
