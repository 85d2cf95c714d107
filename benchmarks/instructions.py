"""Instruction counts of the pure-CPU stages under Valgrind's callgrind: a cost figure that the
runner's noise cannot move.

On a shared runner the same code's wall time wanders by up to 1.7x from one second to the next
(docs/benchmarking-trials.md, "A runner whose speed jumps"); the number of instructions a stage
executes does not. :func:`count` runs this file as a script under callgrind, in one process for
every stage: imports and set-up run uncounted, then each stage is called once to warm it and
once inside ``operator.call``, the only place callgrind collects (``--toggle-collect``), with a
dump after each. The cyclic garbage collector is off during a counted call, so a collection
that the rest of the heap triggers is not charged to the stage.

Needs ``valgrind`` on the PATH and an interpreter whose own C functions carry symbols (python.org
and pyenv builds do; Debian strips its ``python3``): otherwise :func:`count` raises
:class:`Unavailable` and the benchmarks that read it are skipped.

Run as a script, it is the counted process: ``python instructions.py <history dir>`` (the
directory holds a seeded SQLite history, as :func:`count` prepares it).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

#: The stages counted, in the order the script calls them: name -> what it measures.
STAGES = {
    "normalise": "LoudnessNormalizer.process, 4 s of synth output",
    "encode_wav": "encode_wav, 4 s normalised",
    "synth": "SynthBackend.generate, 4 s",
    "status_lookup": "JobManager.get on a 10,000-row SQLite history",
    "list_newest": "JobManager.list(limit=50), same history",
    "counts_by_status": "JobManager.counts_by_status, same history",
}
#: The C function of ``operator.call``: callgrind collects only inside it.
COUNTED_FUNCTION = "_operator_call"
SECONDS = 4.0
SEED = 7
PROMPT = "benchmark groove, 120 bpm in A minor"


class Unavailable(RuntimeError):
    """Instructions cannot be counted here (no valgrind, or an interpreter without symbols)."""


def count(history_dir: Path) -> dict[str, int]:
    """Instructions each stage of :data:`STAGES` executes, once warm, in one callgrind run of
    this file over the seeded history in ``history_dir``."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise Unavailable("valgrind is not installed")
    with tempfile.TemporaryDirectory(prefix="dgx-music-callgrind-") as out:
        command = [
            valgrind,
            "--tool=callgrind",
            "--collect-atstart=no",
            f"--toggle-collect={COUNTED_FUNCTION}",
            f"--dump-after={COUNTED_FUNCTION}",
            f"--callgrind-out-file={out}/callgrind.out",
            sys.executable,
            __file__,
            str(history_dir),
        ]
        environment = {
            **os.environ,
            "PYTHONHASHSEED": "0",
            "OMP_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "NUMBA_NUM_THREADS": "1",
        }
        done = subprocess.run(command, env=environment, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"the counted process failed:\n{done.stderr[-3000:]}")
        dumps = sorted(Path(out).glob("callgrind.out.*"), key=lambda p: int(p.suffix[1:]))
        totals = [_total(path) for path in dumps]
    if len(totals) != len(STAGES):
        raise RuntimeError(f"{len(totals)} callgrind dumps for {len(STAGES)} stages")
    if not all(totals):
        raise Unavailable(f"the interpreter has no symbol {COUNTED_FUNCTION} to count inside")
    return dict(zip(STAGES, totals, strict=True))


def _total(path: Path) -> int:
    found = re.search(r"^totals:\s+(\d+)", path.read_text(), re.M)
    return int(found.group(1)) if found else 0


def _stages(history_dir: Path) -> dict:
    """The stages' calls, set up (imports and inputs outside any count)."""
    from dgx_music.audio import export
    from dgx_music.config import Settings
    from dgx_music.generation.request import GenerationRequest
    from dgx_music.generation.synth import SynthBackend
    from dgx_music.jobs.queue import JobManager
    from dgx_music.storage.database import Database

    request = GenerationRequest(prompt=PROMPT, duration=SECONDS, model="synth")
    synth = SynthBackend()
    raw = synth.generate(request, seed=SEED).audio
    normalizer = export.LoudnessNormalizer()
    normalised = normalizer.process(raw, 32_000).audio
    settings = Settings(data_dir=str(history_dir), output_dir=str(history_dir / "outputs"))
    manager = JobManager(Database(f"sqlite:///{history_dir / 'dgx_music.db'}"), settings=settings)
    some_id = manager.list(limit=1)[0][0].id
    calls = {
        "normalise": lambda: normalizer.process(raw, 32_000),
        "encode_wav": lambda: export.encode_wav(normalised),
        "synth": lambda: synth.generate(request, seed=SEED),
        "status_lookup": lambda: manager.get(some_id),
        "list_newest": lambda: manager.list(limit=50),
        "counts_by_status": lambda: manager.counts_by_status(),
    }
    assert list(calls) == list(STAGES)
    return calls


def main(history_dir: str) -> None:
    import gc
    import operator

    for call in _stages(Path(history_dir)).values():
        call()  # warm: lazy imports, caches, first-call set-up
        gc.collect()
        gc.disable()
        operator.call(call)  # counted (see the module)
        gc.enable()


if __name__ == "__main__":
    main(sys.argv[1])
