"""The regression gate's reading of asv's comparison (``scripts/bench.py compare``).

The gate re-measures what asv's first pass flags as slower and fails only on a slowdown that
shows in both passes; these tests pin how it reads asv's table and selects benchmarks again.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_script", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_script"] = module
    spec.loader.exec_module(module)
    return module


#: The end of an ``asv continuous --split`` run, as asv 0.6 prints it.
ASV_TABLE = """
| Change   | Before [3ce2e0d2] <main>   | After [cdbf83f1] <trial/identical>   |   Ratio | Benchmark (Parameter)                                              |
|----------|----------------------------|--------------------------------------|---------|--------------------------------------------------------------------|
| +        | 7.34±0.9ms                 | 13.4±2ms                             |    1.83 | bench_export.WriteWav.time_write_atomic(16.0)                      |
| +        | 206±20μs                   | 301±20μs                             |    1.46 | bench_database.HistoryQueries.time_status_lookup('sqlite', 100000) |
| -        | 5.59±1ms                   | 3.06±0.3ms                           |    0.55 | bench_api.ApiRequests.time_get_status                              |
| !        | 1.00±0.1s                  | failed                               |     n/a | bench_pipeline.PipelineJob.time_one_job('tiny')                    |
|          | 2.46±0.2ms                 | ~3.59±0.1ms                          |   ~1.46 | bench_export.WriteWav.time_write_atomic(4.0)                       |

SOME BENCHMARKS HAVE CHANGED SIGNIFICANTLY.
PERFORMANCE DECREASED.
"""  # noqa: E501


def test_flagged_reads_slower_and_failing_rows_only(bench):
    assert bench.flagged(ASV_TABLE, "+") == [
        "bench_database.HistoryQueries.time_status_lookup('sqlite', 100000)",
        "bench_export.WriteWav.time_write_atomic(16.0)",
    ]
    assert bench.flagged(ASV_TABLE, "!") == ["bench_pipeline.PipelineJob.time_one_job('tiny')"]
    assert bench.flagged("BENCHMARKS NOT SIGNIFICANTLY CHANGED.", "+") == []


def test_exact_selects_one_parameter_combination(bench):
    """asv matches ``--bench`` against ``name(param, ...)``: the pattern must take the flagged
    combination and none of its neighbours."""
    flagged = "bench_database.HistoryQueries.time_status_lookup('sqlite', 100000)"
    pattern = bench.exact(flagged)
    assert re.search(pattern, flagged)
    assert not re.search(pattern, flagged.replace("sqlite", "postgresql"))
    assert not re.search(pattern, flagged.replace("100000", "1000000"))
    assert not re.search(
        bench.exact("bench_export.WriteWav.time_write_atomic(4.0)"),
        "bench_export.WriteWav.time_write_atomic(14.0)",
    )
