"""Instruction counts of the pure-CPU stages under Valgrind's callgrind: a cost figure that the
runner's noise cannot move.

On a shared runner the same code's wall time wanders by up to 1.7x from one second to the next
(docs/benchmarking-trials.md, "A runner whose speed jumps"); the number of instructions a stage
executes does not. :func:`count` runs this file as a script under callgrind, in one process for
every stage: imports, set-up and one warm call of each stage run uninstrumented, at close to
native speed (``--instr-atstart=no``; the script then starts the instrumentation with
callgrind's client request); then each stage is called once more to warm it again, right
before it is called inside ``operator.call``, the only place callgrind collects
(``--toggle-collect``), with a dump after each. The cyclic garbage
collector is off during a counted call, so a collection that the rest of the heap triggers is
not charged to the stage.

Needs ``valgrind`` on the PATH and an interpreter whose own C functions carry symbols (python.org
and pyenv builds do; Debian strips its ``python3``): otherwise :func:`count` raises
:class:`Unavailable` and the benchmarks that read it are skipped.

Run as a script, it is the counted process: ``python instructions.py <database URL> <stage>...``
(the database holds a seeded history, as the benchmarks prepare it).
"""

from __future__ import annotations

import functools
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Stage:
    """One counted stage: what it measures, and the timed benchmarks (a regex over asv's names)
    whose whole work is this stage's work on a bigger input, so that the gate may leave a
    modest slowdown of them to this count (benchgate/gate.py, ``covering``)."""

    what: str
    covers: str = ""


#: The stages counted, in the order the script calls them. The database stages read the history
#: they are given: SQLite's runs in this process, so its count is the lookup's whole work;
#: PostgreSQL's server is another process, so there the count is the client's share only
#: (:data:`DATABASE_STAGES`) and covers no timed benchmark.
STAGES = {
    "normalise": Stage(
        "LoudnessNormalizer.process, 4 s of synth output",
        r"^bench_export\.LoudnessNormalise\.time_normalise\(",
    ),
    "encode_wav": Stage("encode_wav, 4 s normalised"),
    "export": Stage(
        "export_wav of 4 s of synth output: normalise, encode, write (the write's system calls "
        "are the kernel's, not counted: WriteWav times them)",
        r"^bench_export\.ExportWav\.time_export\(",
    ),
    "analyze": Stage(
        "metadata.analyze, 4 s normalised", r"^bench_metadata\.AnalyzeClip\.time_analyze\("
    ),
    "synth": Stage(
        "SynthBackend.generate, 4 s", r"^bench_generation\.SynthGenerate\.time_generate\("
    ),
    "status_lookup": Stage(
        "JobManager.get on a 10,000-row history",
        r"^bench_database\.HistoryQueries\.time_status_lookup\('sqlite'",
    ),
    "list_newest": Stage(
        "JobManager.list(limit=50), same history",
        r"^bench_database\.HistoryQueries\.time_list_newest\('sqlite'",
    ),
    "counts_by_status": Stage(
        "JobManager.counts_by_status, same history",
        r"^bench_database\.HistoryQueries\.time_counts_by_status\('sqlite'",
    ),
    "read_generation": Stage(
        "the status route's handler, same history",
        r"^bench_api\.ApiRouteHandlers\.time_read_generation$",
    ),
}
#: The stages that read a history, counted on PostgreSQL too.
DATABASE_STAGES = ("status_lookup", "list_newest", "counts_by_status", "read_generation")
#: The C function of ``operator.call``: callgrind collects only inside it.
COUNTED_FUNCTION = "_operator_call"
#: Whether this is an amd64 processor, where the counted process starts uninstrumented and turns
#: the instrumentation on itself (elsewhere, a DGX Spark's arm64, all of it runs instrumented:
#: slower, same counts).
AMD64 = platform.machine().lower() in ("x86_64", "amd64")
#: Valgrind's client requests (valgrind.h, callgrind.h): "am I running on Valgrind?", and
#: callgrind's CALLGRIND_START_INSTRUMENTATION (tool base 'C' 'T', request 4).
RUNNING_ON_VALGRIND = 0x1001
START_INSTRUMENTATION = (ord("C") << 24) + (ord("T") << 16) + 4
#: amd64 code of one client request, as valgrind.h's VALGRIND_DO_CLIENT_REQUEST_EXPR emits it:
#: the request block's address in rax, the default answer (0) in rdx, the four rotations of rdi
#: (128 bits in all: no change) that mark a request, ``xchg rbx, rbx``, the answer from rdx. On
#: a real CPU it does nothing and answers 0.
CLIENT_REQUEST_AMD64 = bytes.fromhex(
    "4889f8"  # mov rax, rdi
    "31d2"  # xor edx, edx
    "48c1c703"  # rol rdi, 3
    "48c1c70d"  # rol rdi, 13
    "48c1c73d"  # rol rdi, 61
    "48c1c733"  # rol rdi, 51
    "4887db"  # xchg rbx, rbx
    "4889d0"  # mov rax, rdx
    "c3"  # ret
)
SECONDS = 4.0
SEED = 7
PROMPT = "benchmark groove, 120 bpm in A minor"


class Unavailable(RuntimeError):
    """Instructions cannot be counted here (no valgrind, or an interpreter without symbols)."""


def count(database_url: str, stages: Sequence[str] = tuple(STAGES)) -> dict[str, int]:
    """Instructions each of ``stages`` (names in :data:`STAGES`) executes, once warm, in one
    callgrind run of this file; the database stages read the seeded history at
    ``database_url``."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise Unavailable("valgrind is not installed")
    with tempfile.TemporaryDirectory(prefix="dgx-music-callgrind-") as out:
        command = [
            valgrind,
            "--tool=callgrind",
            *(["--instr-atstart=no"] if AMD64 else []),  # main() starts it
            "--collect-atstart=no",
            f"--toggle-collect={COUNTED_FUNCTION}",
            f"--dump-after={COUNTED_FUNCTION}",
            f"--callgrind-out-file={out}/callgrind.out",
            sys.executable,
            __file__,
            database_url,
            *stages,
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
    if len(totals) != len(stages):
        raise RuntimeError(f"{len(totals)} callgrind dumps for {len(stages)} stages")
    if not all(totals):
        raise Unavailable(f"the interpreter has no symbol {COUNTED_FUNCTION} to count inside")
    return dict(zip(stages, totals, strict=True))


def _total(path: Path) -> int:
    found = re.search(r"^totals:\s+(\d+)", path.read_text(), re.M)
    return int(found.group(1)) if found else 0


def _stages(database_url: str) -> dict[str, Callable[[], Callable[[], object]]]:
    """Each stage's set-up (imports and inputs, outside any count), which returns its call."""
    import uuid

    def manager():
        from dgx_music.config import Settings
        from dgx_music.jobs.queue import JobManager
        from dgx_music.storage.database import Database

        scratch = Path(tempfile.mkdtemp(prefix="dgx-music-counted-"))
        settings = Settings(data_dir=str(scratch), output_dir=str(scratch / "outputs"))
        return JobManager(Database(database_url), settings=settings)

    @functools.cache
    def history():
        jobs = manager()
        return jobs, jobs.list(limit=1)[0][0].id

    @functools.cache
    def audio():
        from dgx_music.audio import export
        from dgx_music.generation.request import GenerationRequest
        from dgx_music.generation.synth import SynthBackend

        request = GenerationRequest(prompt=PROMPT, duration=SECONDS, model="synth")
        synth = SynthBackend()
        raw = synth.generate(request, seed=SEED).audio
        normalizer = export.LoudnessNormalizer()
        return request, synth, raw, normalizer, normalizer.process(raw, 32_000).audio

    def normalise():
        _, _, raw, normalizer, _ = audio()
        return lambda: normalizer.process(raw, 32_000)

    def encode_wav():
        from dgx_music.audio import export

        normalised = audio()[-1]
        return lambda: export.encode_wav(normalised)

    def export_wav():
        from dgx_music.audio import export

        raw = audio()[2]
        target = Path(tempfile.mkdtemp(prefix="dgx-music-counted-")) / "counted.wav"
        return lambda: export.export_wav(raw, 32_000, target)

    def analyze():
        from dgx_music.audio import metadata

        metadata.warm_up()
        normalised = audio()[-1]
        return lambda: metadata.analyze(normalised, 32_000)

    def synth():
        request, backend, *_ = audio()
        return lambda: backend.generate(request, seed=SEED)

    def status_lookup():
        jobs, some_id = history()
        return lambda: jobs.get(some_id)

    def list_newest():
        jobs, _ = history()
        return lambda: jobs.list(limit=50)

    def counts_by_status():
        jobs, _ = history()
        return jobs.counts_by_status

    def read_generation():
        from dgx_music.api.routes import generations

        jobs, some_id = history()
        return lambda: generations.read_generation(uuid.UUID(some_id), jobs)

    setups = {
        "normalise": normalise,
        "encode_wav": encode_wav,
        "export": export_wav,
        "analyze": analyze,
        "synth": synth,
        "status_lookup": status_lookup,
        "list_newest": list_newest,
        "counts_by_status": counts_by_status,
        "read_generation": read_generation,
    }
    assert list(setups) == list(STAGES)
    return setups


def client_request(code: int, *args: int) -> int:
    """Valgrind's client request ``code``; 0 when not running on Valgrind. Only on amd64
    (:data:`AMD64`): the code is that processor's."""
    import ctypes
    import mmap

    page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    page.write(CLIENT_REQUEST_AMD64)
    request = ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.c_void_p)(
        ctypes.addressof(ctypes.c_char.from_buffer(page))
    )
    block = (ctypes.c_uint64 * 6)(code, *args, *[0] * (5 - len(args)))
    return int(request(ctypes.addressof(block)))


def main(database_url: str, *stages: str) -> None:
    import gc
    import operator

    setups = _stages(database_url)
    calls = {stage: setups[stage]() for stage in stages}
    for call in calls.values():
        call()  # warm, uninstrumented: lazy imports, caches, numba's code
    if AMD64 and client_request(RUNNING_ON_VALGRIND):
        client_request(START_INSTRUMENTATION)
    for call in calls.values():
        call()  # warm again, right before: the other stages' calls touched shared caches
        gc.collect()
        gc.disable()
        operator.call(call)  # counted (see the module)
        gc.enable()


if __name__ == "__main__":
    main(*sys.argv[1:])
