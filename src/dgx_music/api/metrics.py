"""Service metrics for Prometheus, through ``prometheus_client``, one registry per application.

Job counts and queue depth are read from the database at every scrape (a custom collector, so
they cover every worker on every machine). The generation-time histograms and the finished-job
counter are observed by this process's own workers (as Prometheus expects of a histogram: each
process reports what it saw; sum them across instances in the query), through
:meth:`ServiceMetrics.observe_finished`, the callback the worker pool hands its workers. GPU
memory comes from NVML when a GPU is present.

The exposition is the text format 0.0.4: every name here is a classic one, and Prometheus 2.x
servers read nothing newer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from dgx_music.gpu import MIB, GpuStatus
from dgx_music.jobs.records import Job, JobStatus

#: Content type of the exposition (text format 0.0.4).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: Upper bounds of the model-time histogram, seconds: the synth model's tenths of a second up
#: to a large MusicGen checkpoint's minutes on a CPU.
GENERATION_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
#: Upper bounds of the submission-to-completion histogram, seconds.
LATENCY_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
#: How a worker's job can end, as the finished-job counter labels it.
OUTCOMES = (JobStatus.COMPLETED, JobStatus.FAILED)


@dataclass(frozen=True)
class Snapshot:
    """What a scrape reads at the moment it runs, besides what the workers observed.

    ``counts`` is ``None`` when the database could not be read.
    """

    version: str
    counts: Mapping[JobStatus, int] | None
    gpus: Sequence[GpuStatus]
    workers: int
    workers_running: bool


class ServiceMetrics:
    """This application's metrics: a registry of its own, so two apps in one process (the
    tests, an embedding service) never count into each other.

    Parameters
    ----------
    read_snapshot
        Called at every scrape for the database counts, GPU memory and worker state; ``None``
        leaves those families out (a worker process that only observes).
    """

    def __init__(self, read_snapshot: Callable[[], Snapshot] | None = None) -> None:
        # auto_describe off: registering the snapshot collector must not read the database.
        self.registry = CollectorRegistry(auto_describe=False)
        self.generation_seconds = Histogram(
            "dgx_music_generation_seconds",
            "Model time of the generations this process's workers completed, seconds.",
            buckets=GENERATION_BUCKETS,
            registry=self.registry,
        )
        self.job_seconds = Histogram(
            "dgx_music_job_seconds",
            "Time from submission to completion of the generations this process's workers "
            "completed, seconds.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.worker_jobs = Counter(
            "dgx_music_worker_jobs",
            "Jobs this process's workers finished, by outcome.",
            ["outcome"],
            registry=self.registry,
        )
        for outcome in OUTCOMES:  # present at 0 before the first job, as rate() wants
            self.worker_jobs.labels(outcome=str(outcome))
        if read_snapshot is not None:
            self.registry.register(SnapshotCollector(read_snapshot))

    def observe_finished(self, job: Job) -> None:
        """Record a job one of this process's workers completed or failed."""
        if job.status not in OUTCOMES:
            return
        self.worker_jobs.labels(outcome=str(job.status)).inc()
        if job.status is not JobStatus.COMPLETED:
            return
        if job.generation_seconds is not None and job.generation_seconds >= 0:
            self.generation_seconds.observe(job.generation_seconds)
        if job.completed_at is not None:
            self.job_seconds.observe(max(0.0, (job.completed_at - job.created_at).total_seconds()))

    def render(self) -> bytes:
        """The whole exposition, as a scrape receives it."""
        return generate_latest(self.registry)


class SnapshotCollector(Collector):
    """The gauges read at scrape time: build information, database, jobs, workers, GPUs."""

    def __init__(self, read_snapshot: Callable[[], Snapshot]) -> None:
        self.read_snapshot = read_snapshot

    def collect(self) -> Iterator[Metric]:
        snapshot = self.read_snapshot()
        info = GaugeMetricFamily("dgx_music_info", "Build information.", labels=["version"])
        info.add_metric([snapshot.version], 1)
        yield info
        yield GaugeMetricFamily(
            "dgx_music_database_up",
            "Whether the last scrape could read the database (1) or not (0).",
            value=int(snapshot.counts is not None),
        )
        if snapshot.counts is not None:
            jobs = GaugeMetricFamily(
                "dgx_music_jobs", "Generations in the database by status.", labels=["status"]
            )
            for status, number in snapshot.counts.items():
                jobs.add_metric([str(status)], number)
            yield jobs
            yield GaugeMetricFamily(
                "dgx_music_queue_depth",
                "Generations waiting for a worker.",
                value=snapshot.counts.get(JobStatus.PENDING, 0),
            )
        yield GaugeMetricFamily(
            "dgx_music_workers",
            "Worker threads this process runs.",
            value=snapshot.workers if snapshot.workers_running else 0,
        )
        if snapshot.gpus:
            labels = ["gpu", "name"]
            used = GaugeMetricFamily(
                "dgx_music_gpu_memory_used_bytes", "GPU memory in use, bytes.", labels=labels
            )
            total = GaugeMetricFamily(
                "dgx_music_gpu_memory_total_bytes", "GPU memory in all, bytes.", labels=labels
            )
            for gpu in snapshot.gpus:
                values = [str(gpu.index), gpu.name]
                used.add_metric(values, gpu.memory_used_mb * MIB)
                total.add_metric(values, gpu.memory_total_mb * MIB)
            yield used
            yield total
