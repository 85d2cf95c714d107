"""Service metrics in the Prometheus text exposition format (version 0.0.4).

Job counts and queue depth are read from the database at every scrape, so they cover every
worker on every machine. The generation-time histograms are observed by this process's own
workers (as Prometheus expects of a histogram: each process reports what it saw; sum them
across instances in the query). GPU memory comes from NVML when a GPU is present.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from dgx_music.gpu import MIB, GpuStatus
from dgx_music.jobs.records import Job, JobStatus

#: Content type of the text exposition format.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: Upper bounds of the model-time histogram, seconds: the synth model's tenths of a second up
#: to a large MusicGen checkpoint's minutes on a CPU.
GENERATION_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
#: Upper bounds of the submission-to-completion histogram, seconds.
LATENCY_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)


class Histogram:
    """A thread-safe cumulative histogram with fixed bucket bounds (seconds)."""

    def __init__(self, name: str, help_text: str, buckets: Sequence[float]) -> None:
        self.name = name
        self.help_text = help_text
        self.bounds = tuple(sorted(buckets))
        self._counts = [0] * len(self.bounds)
        self._sum = 0.0
        self._count = 0
        self._lock = threading.Lock()

    def observe(self, value: float) -> None:
        if not math.isfinite(value) or value < 0:
            return
        with self._lock:
            self._count += 1
            self._sum += value
            for index, bound in enumerate(self.bounds):
                if value <= bound:
                    self._counts[index] += 1

    @property
    def count(self) -> int:
        return self._count

    def lines(self) -> list[str]:
        with self._lock:
            counts, total, count = list(self._counts), self._sum, self._count
        lines = [f"# HELP {self.name} {self.help_text}", f"# TYPE {self.name} histogram"]
        lines += [
            f'{self.name}_bucket{{le="{_number(bound)}"}} {number}'
            for bound, number in zip(self.bounds, counts, strict=True)
        ]
        lines += [
            f'{self.name}_bucket{{le="+Inf"}} {count}',
            f"{self.name}_sum {_number(total)}",
            f"{self.name}_count {count}",
        ]
        return lines


class ServiceMetrics:
    """What this process observes: its workers' finished jobs."""

    def __init__(self) -> None:
        self.generation_seconds = Histogram(
            "dgx_music_generation_seconds",
            "Model time of the generations this process's workers completed, seconds.",
            GENERATION_BUCKETS,
        )
        self.job_seconds = Histogram(
            "dgx_music_job_seconds",
            "Time from submission to completion of the generations this process's workers "
            "completed, seconds.",
            LATENCY_BUCKETS,
        )
        self._finished: dict[str, int] = {"completed": 0, "failed": 0}
        self._lock = threading.Lock()

    def observe_finished(self, job: Job) -> None:
        """Record a job one of this process's workers completed or failed."""
        with self._lock:
            self._finished[str(job.status)] = self._finished.get(str(job.status), 0) + 1
        if job.status is not JobStatus.COMPLETED:
            return
        if job.generation_seconds is not None:
            self.generation_seconds.observe(job.generation_seconds)
        if job.completed_at is not None:
            self.job_seconds.observe((job.completed_at - job.created_at).total_seconds())

    def finished(self) -> dict[str, int]:
        with self._lock:
            return dict(self._finished)


@dataclass(frozen=True)
class Snapshot:
    """What a scrape reports besides the histograms.

    ``counts`` is ``None`` when the database could not be read.
    """

    version: str
    counts: Mapping[JobStatus, int] | None
    gpus: Sequence[GpuStatus]
    workers: int
    workers_running: bool


def render(metrics: ServiceMetrics, snapshot: Snapshot) -> str:
    """The whole exposition, one metric family after another."""
    lines: list[str] = []
    lines += _family(
        "dgx_music_info", "gauge", "Build information.", [({"version": snapshot.version}, 1)]
    )
    lines += _family(
        "dgx_music_database_up",
        "gauge",
        "Whether the last scrape could read the database (1) or not (0).",
        [({}, int(snapshot.counts is not None))],
    )
    if snapshot.counts is not None:
        lines += _family(
            "dgx_music_jobs",
            "gauge",
            "Generations in the database by status.",
            [({"status": str(status)}, number) for status, number in snapshot.counts.items()],
        )
        lines += _family(
            "dgx_music_queue_depth",
            "gauge",
            "Generations waiting for a worker.",
            [({}, snapshot.counts.get(JobStatus.PENDING, 0))],
        )
    lines += _family(
        "dgx_music_workers",
        "gauge",
        "Worker threads this process runs.",
        [({}, snapshot.workers if snapshot.workers_running else 0)],
    )
    lines += _family(
        "dgx_music_worker_jobs_total",
        "counter",
        "Jobs this process's workers finished, by outcome.",
        [({"outcome": outcome}, number) for outcome, number in metrics.finished().items()],
    )
    lines += metrics.generation_seconds.lines()
    lines += metrics.job_seconds.lines()
    if snapshot.gpus:
        labels = [{"gpu": str(gpu.index), "name": gpu.name} for gpu in snapshot.gpus]
        lines += _family(
            "dgx_music_gpu_memory_used_bytes",
            "gauge",
            "GPU memory in use, bytes.",
            [
                (label, gpu.memory_used_mb * MIB)
                for label, gpu in zip(labels, snapshot.gpus, strict=True)
            ],
        )
        lines += _family(
            "dgx_music_gpu_memory_total_bytes",
            "gauge",
            "GPU memory in all, bytes.",
            [
                (label, gpu.memory_total_mb * MIB)
                for label, gpu in zip(labels, snapshot.gpus, strict=True)
            ],
        )
    return "\n".join(lines) + "\n"


def _family(
    name: str,
    kind: str,
    help_text: str,
    samples: Iterable[tuple[Mapping[str, str], float]],
) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    for labels, value in samples:
        label_text = ",".join(f'{key}="{_escape(text)}"' for key, text in labels.items())
        lines.append(
            f"{name}{{{label_text}}} {_number(value)}" if label_text else f"{name} {_number(value)}"
        )
    return lines


def _escape(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _number(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))
