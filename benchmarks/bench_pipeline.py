"""The whole pipeline: submit, a worker claims, generates, exports the WAV, analyses it and
completes the row, on a fresh SQLite queue.

These are the figures a user waits on: one job end to end, and the seconds per job of a batch
of synth jobs drained by 1, 2 and 4 worker threads (each torch op on one thread; on a 2-core box
more than two workers can only show contention). Tiny batches join in slow mode: a 4-job tiny
batch costs ~4 s a sample, and the gate runs every case twice a commit.
"""

from __future__ import annotations

try:
    from dgx_music.config import Settings
    from dgx_music.jobs.queue import JobManager
    from dgx_music.jobs.worker import run_workers
    from dgx_music.storage.database import Database, upgrade
except ImportError:  # an old commit without the queue and workers: asv skips the suite
    run_workers = None

from .common import Benchmark, is_slow, loaded_engine, make_request, scratch_dir, warm_metadata

#: Models whose jobs are timed: both offline, both through the real pipeline.
MODELS = ["synth", "tiny"]
#: Clip length of every job, seconds.
JOB_SECONDS = 2.0
#: Jobs in a drained batch: seconds per job = ``time_drain_batch`` / BATCH_JOBS.
BATCH_JOBS = 4


class PipelineBenchmark(Benchmark):
    """A fresh queue per timed call (asv re-runs ``setup`` before each one)."""

    number = 1
    #: 3 to 5 samples a round: 6 to 10 a side over the two rounds, enough for asv's test.
    repeat = (3, 5, 15.0)
    timeout = 600.0

    def make_queue(self, model: str, jobs: int) -> None:
        if run_workers is None:
            raise NotImplementedError("dgx_music.jobs.worker is missing")
        warm_metadata()
        self.engine = loaded_engine(model)
        directory = scratch_dir()
        self.settings = Settings(
            data_dir=directory,
            output_dir=directory / "outputs",
            device="cpu",
            poll_seconds=0.05,
        )
        self.database = Database(f"sqlite:///{directory / 'dgx_music.db'}")
        upgrade(self.database)
        self.manager = JobManager(self.database, settings=self.settings)
        self.request = make_request(model, JOB_SECONDS)
        for _ in range(jobs):
            self.manager.submit(self.request)

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
