"""The suite's databases (``benchmarks/postgres.py``): histories shared within a run, and one
backend's failure kept to its own cases."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import bench_database, postgres


@pytest.fixture
def run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """A run token of our own, its scratch directory under tmp_path."""
    monkeypatch.setenv(postgres.TOKEN_VARIABLE, "testrun")
    monkeypatch.setattr(postgres.tempfile, "gettempdir", lambda: str(tmp_path))
    return "testrun"


def test_a_shared_database_is_built_once_per_name_and_key(run: str) -> None:
    built: list[str] = []

    def build(url: str) -> None:
        built.append(url)
        Path(url.removeprefix("sqlite:///")).write_text("seeded")

    first = postgres.shared_database("sqlite", "history_10", "schema1", build)
    again = postgres.shared_database("sqlite", "history_10", "schema1", build)
    other = postgres.shared_database("sqlite", "history_10", "schema2", build)

    assert first == again != other
    assert len(built) == 2  # the second request found the first's database
    assert Path(first.removeprefix("sqlite:///")).read_text() == "seeded"
    postgres.remove_run_scratch(run)
    assert not postgres.run_scratch(run).joinpath(Path(first).name).exists()


def test_a_build_that_fails_leaves_nothing_a_later_process_would_take(run: str) -> None:
    def broken(url: str) -> None:
        Path(url.removeprefix("sqlite:///")).write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        postgres.shared_database("sqlite", "history_10", "schema1", broken)
    assert not list(postgres.run_scratch().glob("history_10_schema1.db"))

    rebuilt = postgres.shared_database(
        "sqlite", "history_10", "schema1", lambda url: Path(url[10:]).write_text("whole")
    )
    assert Path(rebuilt.removeprefix("sqlite:///")).read_text() == "whole"


def test_a_backend_that_cannot_be_built_fails_only_its_own_cases(
    run: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def shared(backend: str, name: str, key: str, build) -> str:
        if backend == "postgresql":
            raise ConnectionError("connection to 127.0.0.1:9 refused")
        return f"sqlite:///{postgres.run_scratch() / 'history.db'}"

    monkeypatch.setattr(bench_database, "shared_database", shared)
    monkeypatch.setattr(bench_database, "middle_id", lambda url, rows: "some-id")
    monkeypatch.setattr(bench_database, "job_manager", lambda url: _Manager())
    benchmark = bench_database.HistoryQueries()
    seeded = benchmark.setup_cache()

    for rows in bench_database.HISTORY_ROWS:
        benchmark.setup(seeded, "sqlite", rows)  # measured as usual
        with pytest.raises(RuntimeError, match=r"postgresql history could not be built.*:9"):
            benchmark.setup(seeded, "postgresql", rows)


def test_without_postgresql_its_cases_are_skipped(
    run: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DGX_MUSIC_BENCH_PG_URL", "off")
    postgres.pg_url.cache_clear()
    try:
        with pytest.raises(NotImplementedError, match="no PostgreSQL"):
            postgres.shared_database("postgresql", "history_10", "k", lambda url: None)
    finally:
        postgres.pg_url.cache_clear()


class _Manager:
    def get(self, job_id: str) -> None:
        return None
