"""Where output files live: ``<output_dir>/YYYY/MM/<generation id>.wav``, and whether they agree
with the database.

User text never reaches a file name; the path stored in the database is relative to the
output directory so the directory can move (or be shared storage mounted elsewhere).

:func:`audit_outputs` compares the files on disk with the rows of the ``generations`` table
(given as :class:`FileRecord` values, so this module never queries the database) and reports
every disagreement; ``dgx-music db check`` prints it and ``dgx-music db cleanup`` repairs it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from dgx_music.storage.models import GenerationStatus

logger = logging.getLogger(__name__)

#: Name of a finished output file: the generation id and ``.wav``.
_WAV_NAME = re.compile(
    r"^(?P<id>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\.wav$"
)
#: Name of a temp file :func:`dgx_music.audio.export.write_temp` leaves while writing one.
_TEMP_NAME = re.compile(
    r"^\.(?P<id>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\.wav\..+\.tmp$"
)
#: Year and month directories of the layout.
_YEAR = re.compile(r"^\d{4}$")
_MONTH = re.compile(r"^(0[1-9]|1[0-2])$")
#: Bytes read at a time when hashing a file.
HASH_CHUNK = 1 << 20
#: Statuses whose file may legitimately be missing or still appearing: a worker is (or will be)
#: writing it.
IN_FLIGHT_STATUSES = frozenset({GenerationStatus.PENDING, GenerationStatus.PROCESSING})


def relative_output_path(generation_id: str, created_at: datetime) -> Path:
    """The path of a generation's WAV file relative to the output directory."""
    return Path(f"{created_at:%Y}") / f"{created_at:%m}" / f"{generation_id}.wav"


def output_path(output_dir: Path, generation_id: str, created_at: datetime) -> Path:
    """The absolute-or-as-configured path of a generation's WAV file."""
    return output_dir / relative_output_path(generation_id, created_at)


def temp_path_pattern(final_path: Path) -> str:
    """Glob pattern of the temp files :func:`dgx_music.audio.export.write_temp` makes for
    ``final_path`` (``.<final name>.<random>.tmp``).

    Kept here rather than imported from the exporter: the queue, ``db check`` and ``db cleanup``
    need it, and importing the exporter would load scipy into every CLI command. A test checks
    that the exporter's temp files match it.
    """
    return f".{final_path.name}.*.tmp"


def remove_temp_files(final_path: Path) -> list[Path]:
    """Delete the temp files a writer of ``final_path`` left behind; return what was removed."""
    removed: list[Path] = []
    if not final_path.parent.is_dir():
        return removed
    for temp in final_path.parent.glob(temp_path_pattern(final_path)):
        try:
            temp.unlink()
        except FileNotFoundError:
            continue
        removed.append(temp)
        logger.info("removed temp file %s", temp, extra={"action": "remove_temp"})
    return removed


def remove_output_file(path: Path) -> bool:
    """Delete ``path`` if it exists; ``True`` when a file was removed."""
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    logger.info("removed output file %s", path, extra={"action": "remove_output"})
    return True


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, hex."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class FileRecord:
    """What a ``generations`` row says about its file."""

    id: str
    status: GenerationStatus
    #: Relative to the output directory; set only on completed rows.
    file_path: str | None
    file_size: int | None
    sha256: str | None
    worker_id: str | None
    lease_expires_at: datetime | None


@dataclass(frozen=True)
class OutputFile:
    """A finished-looking (``.wav``) or temp file found in the output layout."""

    #: Relative to the output directory, with ``/`` separators.
    relative_path: str
    generation_id: str
    #: Seconds since the file was last modified.
    age_seconds: float
    is_temp: bool


@dataclass(frozen=True)
class Mismatch:
    """A completed row whose file differs from what the row recorded."""

    record: FileRecord
    field: str
    expected: str
    actual: str


@dataclass
class ConsistencyReport:
    """Every disagreement between the output directory and the database."""

    output_dir: Path
    #: ``.wav`` files no completed row points to, whose job is not pending or processing.
    orphan_files: list[OutputFile] = field(default_factory=list)
    #: Temp files whose job is not being processed.
    stale_temp_files: list[OutputFile] = field(default_factory=list)
    #: Completed rows whose file is not there.
    missing_files: list[FileRecord] = field(default_factory=list)
    #: Completed rows whose file has another size or SHA-256.
    mismatches: list[Mismatch] = field(default_factory=list)
    #: Processing rows whose lease expired: their worker died or lost the database.
    stuck_jobs: list[FileRecord] = field(default_factory=list)
    #: Rows looked at and files found.
    rows_checked: int = 0
    files_checked: int = 0

    @property
    def ok(self) -> bool:
        return not (
            self.orphan_files
            or self.stale_temp_files
            or self.missing_files
            or self.mismatches
            or self.stuck_jobs
        )

    def problems(self) -> list[str]:
        """One line per problem, each saying what is wrong and where."""
        lines = [
            f"orphan file {item.relative_path}: no completed generation points to it"
            for item in self.orphan_files
        ]
        lines += [
            f"stale temp file {item.relative_path}: left by an interrupted write"
            for item in self.stale_temp_files
        ]
        lines += [
            f"generation {record.id} is completed but its file {record.file_path} is missing"
            for record in self.missing_files
        ]
        lines += [
            f"generation {item.record.id}: file {item.record.file_path} has {item.field} "
            f"{item.actual}, the database recorded {item.expected}"
            for item in self.mismatches
        ]
        lines += [
            f"generation {record.id} is stuck: the lease of worker {record.worker_id} expired "
            f"at {record.lease_expires_at:%Y-%m-%d %H:%M:%S} UTC"
            for record in self.stuck_jobs
            if record.lease_expires_at is not None
        ]
        return lines


def scan_outputs(output_dir: Path) -> list[OutputFile]:
    """Every ``.wav`` and temp file in ``output_dir/YYYY/MM/`` named after a generation id.

    Files that do not follow the layout (a user's notes, other extensions) are not ours and
    are left out.
    """
    found: list[OutputFile] = []
    if not output_dir.is_dir():
        return found
    now = time.time()
    for year in sorted(os.scandir(output_dir), key=lambda entry: entry.name):
        if not (year.is_dir() and _YEAR.match(year.name)):
            continue
        for month in sorted(os.scandir(year.path), key=lambda entry: entry.name):
            if not (month.is_dir() and _MONTH.match(month.name)):
                continue
            for entry in os.scandir(month.path):
                if not entry.is_file(follow_symlinks=False):
                    continue
                match = _WAV_NAME.match(entry.name) or _TEMP_NAME.match(entry.name)
                if match is None:
                    continue
                try:
                    modified = entry.stat(follow_symlinks=False).st_mtime
                except FileNotFoundError:
                    continue  # removed while we looked (a temp file being renamed)
                found.append(
                    OutputFile(
                        relative_path=f"{year.name}/{month.name}/{entry.name}",
                        generation_id=str(uuid.UUID(match["id"])),
                        age_seconds=max(0.0, now - modified),
                        is_temp=entry.name.endswith(".tmp"),
                    )
                )
    return found


def audit_outputs(
    output_dir: Path,
    records: Iterable[FileRecord],
    *,
    now: datetime,
    verify_hashes: bool = True,
) -> ConsistencyReport:
    """Compare the output directory with the database's rows.

    Parameters
    ----------
    output_dir
        Root of the output layout.
    records
        Every row of the ``generations`` table.
    now
        Current time, UTC-aware, for lease expiry.
    verify_hashes
        Read every completed file and compare its SHA-256 (sizes are always compared).
    """
    report = ConsistencyReport(output_dir=output_dir)
    by_id: dict[str, FileRecord] = {}
    referenced: set[str] = set()
    for record in records:
        report.rows_checked += 1
        by_id[record.id] = record
        if (
            record.status is GenerationStatus.PROCESSING
            and record.lease_expires_at is not None
            and record.lease_expires_at < now
        ):
            report.stuck_jobs.append(record)
        if record.status is not GenerationStatus.COMPLETED:
            continue
        if record.file_path is None:
            report.missing_files.append(record)
            continue
        referenced.add(record.file_path)
        _check_completed_file(output_dir, record, report, verify_hashes=verify_hashes)

    for item in scan_outputs(output_dir):
        report.files_checked += 1
        owner = by_id.get(item.generation_id)
        in_flight = owner is not None and owner.status in IN_FLIGHT_STATUSES
        if item.is_temp:
            # Only a processing job's worker may be writing a temp file right now.
            if owner is None or owner.status is not GenerationStatus.PROCESSING:
                report.stale_temp_files.append(item)
        elif item.relative_path not in referenced and not in_flight:
            report.orphan_files.append(item)
    return report


def _check_completed_file(
    output_dir: Path, record: FileRecord, report: ConsistencyReport, *, verify_hashes: bool
) -> None:
    assert record.file_path is not None
    path = output_dir / record.file_path
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        report.missing_files.append(record)
        return
    if record.file_size is not None and size != record.file_size:
        report.mismatches.append(
            Mismatch(record, "size", f"{record.file_size} bytes", f"{size} bytes")
        )
        return
    if verify_hashes and record.sha256 is not None:
        actual = file_sha256(path)
        if actual != record.sha256:
            report.mismatches.append(Mismatch(record, "sha256", record.sha256, actual))
