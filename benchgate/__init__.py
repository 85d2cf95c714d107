"""The asv suite as one tool: what ``make bench``, ``make publish``, ``make bench-compare`` and
``make bench-check`` run, as ``python -m benchgate <command>`` from the repository root.

    run [--machine NAME] [--config FILE] [--quick]
        record the whole suite for the checked-out commit in an asv-managed virtualenv (keyed by
        Python and torch versions), publish the offline site, print a table of headline figures
    publish
        rebuild the site in .asv/html from results/ alone (asv publish + the asv-tachyon viewer)
    summary [--machine NAME] [--commit REF]
        the headline table of a recorded commit
    compare BASE HEAD [--factor F] [--rounds N]
        the regression gate (the pull-request workflow runs exactly this): exit 1 on a slowdown
    check
        CI's guard: ``asv check`` and one quick pass of every benchmark with PostgreSQL and once
        without it; exit 1 when any benchmark fails or a PostgreSQL case did not run
    noise [--runs N] | noise --from-results DIR...
        how noisy each benchmark is on this machine: what the gate says about identical code
    cleanup
        drop PostgreSQL databases left by interrupted benchmark runs

PostgreSQL cases use DGX_MUSIC_BENCH_PG_URL, else a server answering on 127.0.0.1:5432, else
they are skipped (n/a) and the run still succeeds. DGX_MUSIC_BENCH_PG_URL=off forces that.

The package sits beside ``benchmarks/``, not inside it: asv imports every module under its
benchmark directory. It imports ``benchmarks.postgres`` (stdlib-only at import time) as a
package, with the repository root as the working directory, and nothing else of the suite.
"""
