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

Run as a script, it is the counted process: ``python instructions.py <history dir>`` (the
directory holds a seeded SQLite history, as :func:`count` prepares it).
"""

from __future__ import annotations

import os
import platform
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
    "analyze": "metadata.analyze, 4 s normalised",
    "synth": "SynthBackend.generate, 4 s",
    "status_lookup": "JobManager.get on a 10,000-row SQLite history",
    "list_newest": "JobManager.list(limit=50), same history",
    "counts_by_status": "JobManager.counts_by_status, same history",
    "read_generation": "the status route's handler, same history",
}
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
            *(["--instr-atstart=no"] if AMD64 else []),  # main() starts it
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
    import uuid

    from dgx_music.api.routes import generations
    from dgx_music.audio import export, metadata
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
    metadata.warm_up()
    settings = Settings(data_dir=str(history_dir), output_dir=str(history_dir / "outputs"))
    manager = JobManager(Database(f"sqlite:///{history_dir / 'dgx_music.db'}"), settings=settings)
    some_id = manager.list(limit=1)[0][0].id
    calls = {
        "normalise": lambda: normalizer.process(raw, 32_000),
        "encode_wav": lambda: export.encode_wav(normalised),
        "analyze": lambda: metadata.analyze(normalised, 32_000),
        "synth": lambda: synth.generate(request, seed=SEED),
        "status_lookup": lambda: manager.get(some_id),
        "list_newest": lambda: manager.list(limit=50),
        "counts_by_status": lambda: manager.counts_by_status(),
        "read_generation": lambda: generations.read_generation(uuid.UUID(some_id), manager),
    }
    assert list(calls) == list(STAGES)
    return calls


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


def main(history_dir: str) -> None:
    import gc
    import operator

    calls = _stages(Path(history_dir))
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
    main(sys.argv[1])
