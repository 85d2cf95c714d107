"""What the noise table predicts of the gate on identical code (benchgate/predict.py)."""

from __future__ import annotations

import math

import pytest

from benchgate import predict

LOOKUP = "bench_database.HistoryQueries.time_status_lookup('sqlite', 100000)"
SUBMIT = "bench_api.ApiRequests.time_submit"
PEAK = "bench_export.ExportWav.track_export_peak_mib(4.0)"


def test_sigma_reads_a_spread_over_its_runs() -> None:
    # Two runs 1.1x apart say more noise than four runs whose extremes are 1.1x apart.
    assert predict.sigma(1.1, 2) > predict.sigma(1.1, 4) > 0
    assert predict.sigma(1.1, 4) == pytest.approx(math.log(1.1) / 2.059)
    assert predict.sigma(1.0, 4) == 0.0


def test_a_quiet_benchmark_is_never_failed_and_a_noisy_one_sometimes() -> None:
    quiet = predict.predict(SUBMIT, 1.01, 4, trials=4000)
    assert quiet.flagged == 0 and quiet.fails == 0
    noisy = predict.predict(SUBMIT, 1.6, 4, trials=4000)
    # Flagged often, confirmed rarely: the confirmation is what keeps identical code passing.
    assert noisy.flagged > 0.2
    assert 0 < noisy.confirmed < noisy.flagged
    assert noisy.fails == pytest.approx(noisy.flagged * noisy.confirmed)


def test_a_covered_benchmark_is_flagged_only_past_the_wide_factor() -> None:
    alone = predict.predict(LOOKUP, 1.3, 4, trials=4000)
    counted = predict.predict(LOOKUP, 1.3, 4, covered=True, trials=4000)
    assert counted.flagged < alone.flagged / 10


def test_the_suite_rate_combines_benchmarks_and_skips_deterministic_figures() -> None:
    rows = [
        (LOOKUP, 1e-4, 1.6),
        (SUBMIT, 2e-3, 1.6),
        ("bench_export.ExportWav.track_export_peak_mib(16.0)", 41.0, 1.0),
    ]
    plain = predict.suite(rows, 4)
    assert [p.name for p in plain] == [LOOKUP, SUBMIT]
    assert predict.whole_run(plain) == pytest.approx(
        1 - (1 - plain[0].fails) * (1 - plain[1].fails)
    )
    counted = predict.suite(rows, 4, counted={"status_lookup"})
    assert predict.whole_run(counted) < predict.whole_run(plain)
    assert predict.whole_run([]) == 0.0


def test_noise_table_rows_are_read_from_markdown() -> None:
    text = (
        "| benchmark | median | spread | iqr | false alarm at | safe factor |\n"
        "|---|---|---|---|---|---|\n"
        f"| {LOOKUP} | 0.0001589 | 1.117 | 14.3 % | never | 1.000 |\n"
        f"| {PEAK} | 10.28 | 1.000 | - | never | 1.000 |\n"
        "| a | export 1.25x | 3 m 57 s | 1 | x | y |\n"
    )
    rows = [(LOOKUP, 0.0001589, 1.117), (PEAK, 10.28, 1.0)]
    assert predict.rows_from_markdown(text) == rows
    document = f"# Log\n\n## Old table\n\n| {SUBMIT} | 1 | 2 | - | x | y |\n\n## New\n\n{text}"
    assert predict.rows_from_markdown(document, "New") == rows
    assert len(predict.rows_from_markdown(document)) == 3
    assert predict.rows_from_markdown(document, "Missing") == []
