"""A lock that lets one process at a time fill numba's on-disk cache of librosa's compiled code.

librosa compiles its numba functions with ``cache=True``: the machine code goes to files beside
the source (or under ``NUMBA_CACHE_DIR``), an index file mapping each signature to a data file.
numba takes no lock on that cache. Two processes that compile different signatures of one
function at the same moment can both read the same index, both claim the same data file for
their own signature, and leave an index that names one signature's code for the other. The next
process to load that entry calls machine code built for other argument types and dies with a
segmentation fault. Seen here on a fresh virtual environment: ten pytest workers starting
together, and two ``dgx-music worker`` processes started at once (exit -11).

:func:`exclusive` is held around a process's first use of the compiled code: each analysis module
(:mod:`dgx_music.audio.mono`, :mod:`dgx_music.audio.tempo`, :mod:`dgx_music.audio.key`) runs its
own code on a short clip through :func:`first_use` before its first real call, which either loads
every function it needs from the cache or compiles and writes it. Later uses only read what is
loaded. Importing counts as use: some of librosa's modules (``librosa.core.audio``,
``librosa.util.utils``) declare vectorised functions with their signatures, which numba compiles
and caches as the module is imported, so the first touch of ``librosa.resample`` writes the
cache too (a CI run on a cold cache lost 3 of 6 processes to SIGSEGV while that touch happened
outside the lock). The lock is an
advisory ``flock`` on a file in the temporary directory, named after the librosa installation, so
processes of one environment wait for each other and other environments do not; the kernel
drops it when its holder dies, so a killed process never leaves it held.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

logger = logging.getLogger(__name__)

try:  # POSIX only; elsewhere the lock is a no-op (the service targets Linux DGX machines).
    import fcntl
except ImportError:  # pragma: no cover - not on Linux
    fcntl = None  # type: ignore[assignment]

#: Longest wait for another process's first use, seconds (a cold compile takes about 30 s on a
#: small CPU; ten processes in a row take minutes). Past it, go on unlocked with a warning
#: rather than hang a worker forever behind a stopped process.
WAIT_LIMIT = 900.0
_POLL_SECONDS = 0.05


def lock_path() -> Path:
    """The lock file shared by every process that uses this librosa installation."""
    import librosa  # lazy package: importing it compiles nothing

    where = str(Path(librosa.__file__).resolve().parent)
    tag = hashlib.sha256(where.encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"dgx-music-numba-{tag}.lock"


@contextlib.contextmanager
def exclusive(path: Path | None = None, wait_limit: float = WAIT_LIMIT) -> Iterator[bool]:
    """Hold the cache lock for the body; yields whether it is held.

    Parameters
    ----------
    path
        Lock file; :func:`lock_path` when ``None``.
    wait_limit
        Seconds to wait for another holder before going on without the lock (logged).
    """
    if fcntl is None:  # pragma: no cover - not on Linux
        yield False
        return
    path = path or lock_path()
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o644)  # flock needs no write access
    except OSError as error:
        logger.warning(
            "numba cache lock unavailable, going on without it",
            extra={"action": "numba_cache_lock", "path": str(path), "error": str(error)},
        )
        yield False
        return
    try:
        held = _acquire(fd, wait_limit)
        if not held:
            logger.warning(
                "numba cache lock still held by another process, going on without it",
                extra={"action": "numba_cache_lock", "path": str(path), "waited_s": wait_limit},
            )
        yield held
    finally:
        os.close(fd)  # closing the descriptor releases the flock


def _acquire(fd: int, wait_limit: float) -> bool:
    deadline = time.monotonic() + wait_limit
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(_POLL_SECONDS)


#: Names whose first use this process has run, and those being run now (by the lock's holder).
_used: set[str] = set()
_running: set[str] = set()
_first_use_lock = threading.RLock()


def first_use(name: str, warm: Callable[[], object]) -> None:
    """Run ``warm`` (a first use of some librosa code) once per process, under :func:`exclusive`.

    Threads of one process wait on a thread lock for the one that runs it; a call back into
    ``first_use`` from inside ``warm`` (the warm-up running the code it warms) passes through.

    Parameters
    ----------
    name
        What is being warmed, usually the calling module's ``__name__``.
    warm
        Calls the code whose numba functions must be loaded or compiled.
    """
    if name in _used:
        return
    with _first_use_lock:
        if name in _used or name in _running:
            return
        _running.add(name)
        try:
            started = time.perf_counter()
            with exclusive():
                warm()
            _used.add(name)
            logger.debug(
                "librosa code warmed up",
                extra={
                    "action": "numba_first_use",
                    "what": name,
                    "seconds": time.perf_counter() - started,
                },
            )
        finally:
            _running.discard(name)
