"""The whole pipeline: submit, a worker claims, generates, exports the WAV, analyses it and
completes the row, on a fresh SQLite queue.

These are the figures a user waits on: one job end to end, and the seconds per job of a batch
of synth jobs drained by 1, 2 and 4 worker threads (each torch op on one thread; on a 2-core box
more than two workers can only show contention). Tiny batches join in slow mode: a 4-job tiny
batch costs ~4 s a sample, and the gate runs every case twice a commit.
"""

from __future__ import annotations

import dataclasses
import os

try:
    from dgx_music.config import Settings
    from dgx_music.jobs.queue import JobManager
    from dgx_music.jobs.worker import run_workers
    from dgx_music.storage.database import Database, upgrade
except ImportError:  # an old commit without the queue and workers: asv skips the suite
    run_workers = None

from .common import (
    SEED,
    TWINS,
    Benchmark,
    is_slow,
    loaded_engine,
    make_request,
    require_cuda,
    scratch_dir,
    warm_metadata,
)

#: Models whose jobs are timed: both offline, both through the real pipeline.
MODELS = ["synth", "tiny"]
#: Clip length of every job, seconds.
JOB_SECONDS = 2.0
#: Jobs in a drained batch: seconds per job = ``time_drain_batch`` / BATCH_JOBS.
BATCH_JOBS = 4
#: Jobs queued for the batching benchmarks: jobs per minute = 60 * QUEUE_JOBS / the time.
QUEUE_JOBS = 8


class PipelineBenchmark(Benchmark):
    """A fresh queue per timed call (asv re-runs ``setup`` before each one)."""

    number = 1
    #: 3 to 5 samples a round: 6 to 10 a side over the two rounds, enough for asv's test.
    repeat = (3, 5, 15.0)
    #: No warm-up call: the engine and librosa are warmed once per process (``loaded_engine``,
    #: ``warm_metadata``) and every sample gets a fresh queue anyway; a warm-up call cost a
    #: whole drain per case and round, about a minute of each gate run.
    warmup_time = 0.0
    timeout = 600.0

    #: Jobs of one model a worker generates together (DGX_MUSIC_BATCH_SIZE); 1 keeps the
    #: classes that measure worker threads about threads alone.
    batch_size = 1
    #: Clip length of every job, seconds.
    seconds = JOB_SECONDS
    #: Device of the worker's engine.
    device = "cpu"

    def make_queue(self, model: str, jobs: int) -> None:
        if run_workers is None:
            raise NotImplementedError("dgx_music.jobs.worker is missing")
        warm_metadata()
        os.environ["DGX_MUSIC_DEVICE"] = self.device
        try:
            self.engine = loaded_engine(model)
        except Exception as exc:  # an old commit that does not know the model
            raise NotImplementedError(f"{model} cannot run here: {exc}") from exc
        directory = scratch_dir()
        self.settings = Settings(
            data_dir=directory,
            output_dir=directory / "outputs",
            device=self.device,
            poll_seconds=0.05,
            batch_size=self.batch_size,
        )
        self.database = Database(f"sqlite:///{directory / 'dgx_music.db'}")
        upgrade(self.database)
        self.manager = JobManager(self.database, settings=self.settings)
        self.request = make_request(model, self.seconds)
        for index in range(jobs):
            # Each job its own seed, as a queue of different users' jobs has.
            self.manager.submit(dataclasses.replace(self.request, seed=SEED + index))

    def drain(self, workers: int) -> None:
        ran = run_workers(
            workers,
            settings=self.settings,
            manager=self.manager,
            engine=self.engine,
            exit_when_empty=True,
            install_signal_handlers=False,
        )
        assert ran == self.jobs, f"{ran} of {self.jobs} jobs ran"  # a broken pipeline is no figure

    def teardown(self, *params: object) -> None:
        if hasattr(self, "database"):  # also called after a skipped setup
            self.database.dispose()


class PipelineJob(PipelineBenchmark):
    """One job end to end: submit, claim, generate, export, analyse, complete."""

    params = [MODELS]
    param_names = ["model"]
    jobs = 1

    def setup(self, model: str) -> None:
        super().setup()
        self.make_queue(model, jobs=0)

    def time_one_job(self, model: str) -> None:
        self.manager.submit(self.request)
        self.drain(workers=1)


class PipelineThroughput(PipelineBenchmark):
    """A batch of BATCH_JOBS jobs drained by 1, 2 or 4 worker threads sharing one engine."""

    params = [MODELS if is_slow() else ["synth"], [1, 2, 4]]
    param_names = ["model", "workers"]
    jobs = BATCH_JOBS

    def setup(self, model: str, workers: int) -> None:
        super().setup()
        self.make_queue(model, jobs=BATCH_JOBS)

    def time_drain_batch(self, model: str, workers: int) -> None:
        """Seconds for the batch; seconds per job = this / BATCH_JOBS."""
        self.drain(workers)


class QueueBatching(PipelineBenchmark):
    """QUEUE_JOBS queued 1 s jobs of one model drained by one worker that claims and generates
    up to ``batch`` of them at once (DGX_MUSIC_BATCH_SIZE); jobs per minute =
    60 * QUEUE_JOBS / this.

    ``tiny`` in the default suite (its figure is mostly transformers' per-step overhead, which
    a batch shares); the musicgen-small twin in slow mode, where the step's arithmetic counts.
    """

    params = [["tiny", TWINS[0]] if is_slow() else ["tiny"], [1, 4, 8]]
    param_names = ["model", "batch"]
    jobs = QUEUE_JOBS
    seconds = 1.0
    #: 3 samples a round, 6 a side in the gate: enough for asv's test, and the whole class stays
    #: under 20 s a round for tiny.
    repeat = 3
    timeout = 1800.0

    def setup(self, model: str, batch: int) -> None:
        super().setup()
        self.batch_size = batch
        self.make_queue(model, jobs=QUEUE_JOBS)

    def time_drain_queue(self, model: str, batch: int) -> None:
        """Seconds to drain the queue; jobs per minute = 60 * QUEUE_JOBS / this."""
        self.drain(workers=1)


class QueueBatchingGpu(QueueBatching):
    """:class:`QueueBatching` for every twin on CUDA in fp16 (GPU machines only)."""

    params = [TWINS, [1, 4, 8]]

    def setup(self, model: str, batch: int) -> None:
        require_cuda()
        self.device = "cuda"
        super().setup(model, batch)
