"""The ``dgx-music`` command line: typer commands, rich output.

Exit codes: 0 success, 2 invalid input (the message names the field), 1 any other failure.

Each command imports what it needs when it runs. The queue and history commands (``submit``,
``jobs``, ``jobs show``, ``jobs cancel``, ``db ...``) never import torch, transformers, librosa or
scipy, which would cost seconds per command; a test runs them in a subprocess and checks.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from dgx_music import __version__
from dgx_music.audio.calibration import stated
from dgx_music.config import Settings, get_settings
from dgx_music.errors import DgxMusicError, InvalidInputError, ValidationError

if TYPE_CHECKING:
    from rich.progress import Progress

    from dgx_music.generation.request import GenerationRequest
    from dgx_music.jobs.queue import JobManager
    from dgx_music.jobs.records import JobStatus

app = typer.Typer(
    name="dgx-music",
    help="Local text-to-music: MusicGen to loudness-normalised WAV, with history and a queue.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)

#: Exit code for invalid input, as for typer's own usage errors.
EXIT_INVALID_INPUT = 2
#: Exit code for every other failure.
EXIT_FAILURE = 1

T = TypeVar("T")


def fail(exc: DgxMusicError) -> typer.Exit:
    """Print ``exc`` on stderr and return the exit to raise: 2 for bad input, 1 otherwise."""
    err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
    return typer.Exit(EXIT_INVALID_INPUT if isinstance(exc, InvalidInputError) else EXIT_FAILURE)


def run_or_exit(action: Callable[[], T]) -> T:
    """Run ``action``; turn a project error into a one-line message and an exit code."""
    try:
        return action()
    except DgxMusicError as exc:
        raise fail(exc) from exc


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log at INFO level.")] = False,
) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )


@contextmanager
def progress_bar() -> Iterator[Progress]:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[unit]}"),
        TimeElapsedColumn(),
        console=err_console,
        transient=False,
    ) as progress:
        yield progress


def format_value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def metadata_table(title: str, rows: dict[str, Any]) -> Table:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column("field", style="cyan")
    table.add_column("value")
    for key, value in rows.items():
        table.add_row(key, format_value(value))
    return table


def build_request(
    prompt: str,
    duration: float,
    model: str,
    seed: int | None,
    temperature: float,
    top_k: int,
    top_p: float,
    cfg: float,
    continue_from: str | None = None,
) -> GenerationRequest:
    """Validate the request options; exit 2 naming the field when one is out of range."""
    from dgx_music.generation.request import GenerationRequest

    return run_or_exit(
        lambda: GenerationRequest(
            prompt=prompt,
            duration=duration,
            model=model,
            seed=seed,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            guidance_scale=cfg,
            continue_from=continue_from,
        )
    )


PromptArgument = Annotated[str, typer.Argument(help="What the music should sound like.")]
DurationOption = Annotated[
    float,
    typer.Option(
        help="Length in seconds: 0 < d <= DGX_MUSIC_MAX_DURATION "
        f"({Settings.model_fields['max_duration'].default:g} by default); past 30 s MusicGen "
        "works in windows. With --continue: seconds of new music after the track."
    ),
]
ModelOption = Annotated[
    str, typer.Option(help="tiny, synth, facebook/musicgen-* or a checkpoint directory.")
]
SeedOption = Annotated[int | None, typer.Option(help="Random seed for a reproducible result.")]
TemperatureOption = Annotated[float, typer.Option(help="Sampling temperature (> 0).")]
TopKOption = Annotated[int, typer.Option(help="Top-k sampling (0 disables).")]
TopPOption = Annotated[float, typer.Option(help="Nucleus sampling in [0, 1] (0 disables).")]
CfgOption = Annotated[float, typer.Option(help="Classifier-free guidance scale (>= 1).")]
ContinueFromOption = Annotated[
    str | None,
    typer.Option(
        "--continue-from",
        help="The id of a completed generation to continue (its last 25 s condition the model).",
    ),
]


@app.command()
def generate(
    prompt: PromptArgument,
    duration: DurationOption = 8.0,
    model: ModelOption = "",
    seed: SeedOption = None,
    temperature: TemperatureOption = 1.0,
    top_k: TopKOption = 250,
    top_p: TopPOption = 0.0,
    cfg: CfgOption = 3.0,
    out: Annotated[
        Path | None,
        typer.Option(help="Also write a copy of the WAV here (the outputs directory keeps one)."),
    ] = None,
    continue_file: Annotated[
        Path | None,
        typer.Option(
            "--continue",
            help="A sound file to continue (any rate, mono or stereo, up to 300 s): the output "
            "is that track, then --duration seconds of new music. Its last 25 s condition the "
            "model.",
        ),
    ] = None,
    continue_from: ContinueFromOption = None,
) -> None:
    """Generate a track now, write a -16 LUFS 32 kHz stereo WAV, record it, print its metadata."""
    from dgx_music.generation.continuation import load_audio_prompt
    from dgx_music.jobs.pipeline import generate_and_record

    request = build_request(
        prompt, duration, model, seed, temperature, top_k, top_p, cfg, continue_from
    )
    if continue_file is not None and continue_from is not None:
        raise fail(ValidationError("continue", "give --continue or --continue-from, not both"))
    continuation = None
    if continue_file is not None:
        continuation = run_or_exit(lambda: load_audio_prompt(continue_file))
    with progress_bar() as progress:
        task = progress.add_task(f"generating with {request.model}", total=None, unit="steps")

        def on_progress(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        outcome = run_or_exit(
            lambda: generate_and_record(
                request, out=out, progress=on_progress, continuation=continuation
            )
        )
    console.print(f"[bold green]wrote[/] {outcome.path}", highlight=False)
    console.print(metadata_table("track", outcome.summary()))


@app.command()
def submit(
    prompt: PromptArgument,
    duration: DurationOption = 8.0,
    model: ModelOption = "",
    seed: SeedOption = None,
    temperature: TemperatureOption = 1.0,
    top_k: TopKOption = 250,
    top_p: TopPOption = 0.0,
    cfg: CfgOption = 3.0,
    continue_from: ContinueFromOption = None,
) -> None:
    """Queue a generation for the workers and print its id."""
    from dgx_music.generation.engine import resolve_model
    from dgx_music.jobs.sources import continuable

    request = build_request(
        prompt, duration, model, seed, temperature, top_k, top_p, cfg, continue_from
    )
    run_or_exit(lambda: resolve_model(request.model))
    manager = run_or_exit(job_manager)
    if request.continue_from is not None:
        run_or_exit(lambda: continuable(manager, request.continue_from))
    job = run_or_exit(lambda: manager.submit(request))
    console.print(job.id, highlight=False, soft_wrap=True)


def job_manager() -> JobManager:
    """The queue over the configured database, opened (and migrated) on first use."""
    from dgx_music.jobs.queue import JobManager
    from dgx_music.storage.database import get_database

    return JobManager(get_database())


def parse_status(status: str | None) -> JobStatus | None:
    from dgx_music.jobs.records import JobStatus

    if status is None:
        return None
    try:
        return JobStatus(status.strip().lower())
    except ValueError:
        choices = ", ".join(member.value for member in JobStatus)
        raise fail(
            ValidationError("status", f"unknown status {status!r}; choose one of: {choices}")
        ) from None


def format_time(value: datetime | None) -> str:
    return "-" if value is None else f"{value:%Y-%m-%d %H:%M:%S}"


jobs_app = typer.Typer(
    help="List, inspect and cancel generations (queued and finished).",
    no_args_is_help=False,
)
app.add_typer(jobs_app, name="jobs")


@jobs_app.callback(invoke_without_command=True)
def jobs(
    ctx: typer.Context,
    status: Annotated[
        str | None,
        typer.Option(help="Only this status: pending, processing, completed, failed, cancelled."),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="Rows to show.")] = 20,
    offset: Annotated[int, typer.Option(min=0, help="Rows to skip (newest first).")] = 0,
) -> None:
    """List generations, newest first."""
    from dgx_music.jobs.records import JobStatus

    if ctx.invoked_subcommand is not None:
        return
    wanted = parse_status(status)
    found, total = run_or_exit(lambda: job_manager().list(wanted, limit=limit, offset=offset))
    table = Table(
        title=f"jobs ({len(found)} of {total})", title_justify="left", box=box.SIMPLE_HEAD
    )
    table.add_column("id", no_wrap=True, min_width=36)
    table.add_column("status", no_wrap=True, min_width=10)
    table.add_column("created (UTC)", no_wrap=True, min_width=14)
    table.add_column("prompt", no_wrap=True, overflow="ellipsis")
    for job in found:
        status_text = job.status.value
        if job.status is JobStatus.PROCESSING:
            status_text += f" {job.progress:.0%}"
        table.add_row(job.id, status_text, f"{job.created_at:%m-%d %H:%M:%S}", job.prompt)
    console.print(table)


@jobs_app.command("show")
def jobs_show(job_id: Annotated[str, typer.Argument(help="The generation id.")]) -> None:
    """Everything recorded about one generation."""
    job = run_or_exit(lambda: job_manager().get(job_id))
    rows: dict[str, Any] = {
        field.name: getattr(job, field.name)
        for field in dataclasses.fields(job)
        if field.name != "metadata"
    }
    rows["status"] = job.status.value
    for name in ("created_at", "started_at", "completed_at", "lease_expires_at"):
        rows[name] = format_time(rows[name])
    if job.file_path is not None:
        rows["file"] = str(get_settings().output_dir / job.file_path)
    # A tempo or key read with little confidence is shown as such, never as fact.
    flags = (job.metadata or {}).get("flags", [])
    rows["tempo_bpm"], rows["key"] = stated(job.tempo_bpm, job.key, flags)
    console.print(metadata_table(f"job {job.id}", rows))
    if job.metadata:
        console.print(metadata_table("metadata", job.metadata))


@jobs_app.command("cancel")
def jobs_cancel(job_id: Annotated[str, typer.Argument(help="The generation id.")]) -> None:
    """Cancel a pending generation."""
    job = run_or_exit(lambda: job_manager().cancel(job_id))
    console.print(f"cancelled {job.id}", highlight=False)


@app.command()
def worker(
    concurrency: Annotated[
        int | None,
        typer.Option(
            help="Worker threads in this process (default: DGX_MUSIC_WORKER_CONCURRENCY)."
        ),
    ] = None,
    exit_when_empty: Annotated[
        bool, typer.Option(help="Exit once no job is pending or processing.")
    ] = False,
    max_jobs: Annotated[
        int | None, typer.Option(min=1, help="Exit after each worker ran this many jobs.")
    ] = None,
) -> None:
    """Run queue workers until SIGTERM/SIGINT (running jobs finish, or are released)."""
    from dgx_music.jobs.worker import run_workers

    if concurrency is not None and concurrency < 1:
        raise fail(ValidationError("concurrency", f"must be at least 1, got {concurrency}"))
    processed = run_or_exit(
        lambda: run_workers(concurrency, exit_when_empty=exit_when_empty, max_jobs=max_jobs)
    )
    err_console.print(f"workers stopped after {processed} jobs", highlight=False)


db_app = typer.Typer(
    help="The generation database: migrations and file consistency.", no_args_is_help=True
)
app.add_typer(db_app, name="db")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the schema to the newest revision (safe to run again)."""
    from dgx_music.storage.database import Database, current_revision, upgrade

    def migrate() -> tuple[str, str | None]:
        database = Database(get_settings().resolved_database_url)
        try:
            database.check_connection()
            upgrade(database)
            return database.masked_url, current_revision(database)
        finally:
            database.dispose()

    url, revision = run_or_exit(migrate)
    console.print(f"database {url} is at revision {revision} (head)", highlight=False)


@db_app.command("check")
def db_check(
    hashes: Annotated[
        bool, typer.Option(help="Read every file and compare its SHA-256 (sizes always).")
    ] = True,
) -> None:
    """Report orphan files, missing files, size or SHA-256 mismatches, stuck leases and
    generation counts that differ from the rows.

    Exits 1 when anything is wrong.
    """
    from dgx_music.storage.database import head_revision, is_up_to_date

    manager = run_or_exit(job_manager)
    report = run_or_exit(lambda: manager.check(verify_hashes=hashes))
    problems = report.problems()
    if not run_or_exit(lambda: is_up_to_date(manager.database)):
        problems.insert(0, f"schema is not at revision {head_revision()}: run dgx-music db upgrade")
    else:
        problems += count_problems(manager)
    summary = f"checked {report.rows_checked} rows and {report.files_checked} files"
    if not problems:
        console.print(f"[bold green]ok[/] {summary}", highlight=False)
        return
    for line in problems:
        console.print(f"[red]problem[/] {line}", highlight=False)
    console.print(f"{len(problems)} problems; {summary}", highlight=False)
    raise typer.Exit(EXIT_FAILURE)


def count_problems(manager: JobManager) -> list[str]:
    """Where the maintained per-status counts (listing totals) differ from the rows."""
    maintained = run_or_exit(manager.counts_by_status)
    counted = run_or_exit(manager.counted_by_rows)
    return [
        f"the maintained count of {status} generations is {maintained[status]} but "
        f"{counted[status]} rows are {status}: run dgx-music db cleanup"
        for status in counted
        if maintained[status] != counted[status]
    ]


@db_app.command("cleanup")
def db_cleanup(
    dry_run: Annotated[bool, typer.Option(help="Say what would be done, change nothing.")] = False,
    grace: Annotated[
        float,
        typer.Option(min=0, help="Leave orphan and temp files younger than this, seconds."),
    ] = 300.0,
) -> None:
    """Repair what is safe: re-queue stuck jobs, delete orphan and temp files, fail rows whose
    file is gone, rebuild wrong generation counts. Never deletes a file a completed row
    points to."""
    manager = run_or_exit(job_manager)
    result = run_or_exit(lambda: manager.cleanup(dry_run=dry_run, grace_seconds=grace))
    verb = "would" if dry_run else "did"
    if count_problems(manager):
        if not dry_run:
            run_or_exit(manager.recount)
        console.print(f"{verb} rebuild the generation counts from the rows", highlight=False)
    console.print(
        f"{verb} recover {result.requeued_or_failed} stuck jobs, remove "
        f"{len(result.removed_files)} files, mark {len(result.marked_missing)} rows failed",
        highlight=False,
    )
    for path in result.removed_files:
        console.print(f"  {'would remove' if dry_run else 'removed'} {path}", highlight=False)
    for job_id in result.marked_missing:
        console.print(f"  {'would fail' if dry_run else 'failed'} {job_id}", highlight=False)
    for line in result.left_alone:
        console.print(f"[yellow]left alone[/] {line}", highlight=False)


@app.command()
def serve(
    host: Annotated[
        str | None, typer.Option(help="Address to bind (default: DGX_MUSIC_HOST or 127.0.0.1).")
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(min=0, max=65535, help="TCP port (default: DGX_MUSIC_PORT or 8000)."),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Worker threads in this process (default: DGX_MUSIC_WORKER_CONCURRENCY); "
            "0 runs none.",
        ),
    ] = None,
) -> None:
    """Serve the REST API (/api/v1) and the web page (http://127.0.0.1:8000/) with workers."""
    from dgx_music.api.server import serve as run_server

    run_or_exit(lambda: run_server(host, port, workers))


@app.command()
def info() -> None:
    """Versions, device, GPU and which models are available offline."""
    import platform

    import torch
    import transformers

    from dgx_music.generation.engine import MusicEngine, choose_device
    from dgx_music.generation.twins import TWIN_CHECKPOINTS, parameter_counts
    from dgx_music.gpu import gpu_status

    versions = Table(title="dgx-music", show_header=False, title_justify="left")
    versions.add_column("item", style="cyan")
    versions.add_column("value")
    versions.add_row("dgx-music", __version__)
    versions.add_row("python", platform.python_version())
    versions.add_row("torch", torch.__version__)
    versions.add_row("transformers", transformers.__version__)
    versions.add_row("cuda available", str(torch.cuda.is_available()))
    versions.add_row("device (auto)", run_or_exit(lambda: choose_device("auto")))
    for gpu in gpu_status():
        versions.add_row(
            f"gpu {gpu.index}",
            f"{gpu.name}, {gpu.memory_used_mb:.0f} / {gpu.memory_total_mb:.0f} MiB used",
        )
    console.print(versions)

    models = Table(title="models", title_justify="left")
    models.add_column("name", style="cyan")
    models.add_column("kind")
    models.add_column("offline")
    models.add_column("source")
    for entry in MusicEngine().available_models():
        models.add_row(
            entry.name,
            entry.kind,
            "[green]yes[/]" if entry.available_offline else "[red]no[/]",
            entry.source,
        )
    console.print(models)

    # Counted on the meta device: no weights are allocated, so this stays fast.
    twins = Table(
        title="Shape twins (random weights, noise; for cost measurement)",
        caption="parameters, millions: text encoder (T5-base), codec (EnCodec 32 kHz), "
        "decoder (the language model)",
        title_justify="left",
        caption_justify="left",
    )
    # Short headers keep the full twin names inside an 80-column terminal.
    twins.add_column("twin", style="cyan", no_wrap=True)
    for header in ("text enc.", "codec", "decoder", "total"):
        twins.add_column(header, justify="right")
    for name in TWIN_CHECKPOINTS:
        counts = parameter_counts(name)
        twins.add_row(
            name,
            *(
                f"{counts[part] / 1e6:.1f}"
                for part in ("text_encoder", "audio_encoder", "decoder", "total")
            ),
        )
    console.print(twins)


if __name__ == "__main__":
    app()
