"""Keep freed audio buffers in the process instead of giving them back to the kernel.

An export or analysis makes a dozen short-lived arrays of one clip's size (4 s of stereo float64
at 32 kHz is 2 MiB, 16 s is 8 MiB). glibc serves allocations that large with ``mmap`` and
returns them with ``munmap`` (or trims them off the heap as soon as 2x its current mmap
threshold lies free), so the next array of that size starts as untouched pages and pays a page
fault per 4 KiB on first write. On the 2-core CI VM that was a third of the export: one K-weighting
pass over 4 s took 3.7 ms with fresh pages and 2.0 ms with reused ones (glibc's
``MALLOC_MMAP_THRESHOLD_``/``MALLOC_TRIM_THRESHOLD_`` variables, same process otherwise).

:func:`keep_freed_memory` sets the same two thresholds with ``mallopt``: arrays up to 32 MiB
come from the heap, and up to ``megabytes`` of free heap stays mapped for the next one. The
process's resident size then stays near its high-water mark rather than falling between jobs;
the service's other costs (torch, a model) dwarf it. Set ``DGX_MUSIC_MALLOC_KEEP_MB=0`` for
glibc's own behaviour. Only glibc has ``mallopt``; elsewhere this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading

logger = logging.getLogger(__name__)

#: ``mallopt`` parameters (glibc's malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: Largest mmap threshold glibc accepts on 64-bit (HEAP_MAX_SIZE / 2), bytes.
MMAP_THRESHOLD_MAX = 32 * 2**20

_lock = threading.Lock()
_applied: int | None = None


def keep_freed_memory(megabytes: int) -> bool:
    """Serve arrays up to 32 MiB from the heap and keep up to ``megabytes`` MiB of it when freed.

    Process-wide; the first call with a positive value wins, later calls change nothing.

    Parameters
    ----------
    megabytes
        Free heap kept mapped, MiB; 0 leaves glibc's defaults alone.

    Returns
    -------
    bool
        Whether the thresholds are set (now or by an earlier call).
    """
    global _applied
    if megabytes <= 0:
        return False
    with _lock:
        if _applied is not None:
            return True
        mallopt = _mallopt()
        if mallopt is None:
            return False
        trim = megabytes * 2**20
        if not (mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX) and mallopt(M_TRIM_THRESHOLD, trim)):
            logger.warning("mallopt refused the thresholds", extra={"action": "malloc_tuning"})
            return False
        _applied = megabytes
        logger.debug("freed memory kept up to %d MiB", megabytes, extra={"action": "malloc_tuning"})
        return True


def _mallopt() -> ctypes._CFuncPtr | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        function = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS)
        return None
    function.argtypes = (ctypes.c_int, ctypes.c_int)
    function.restype = ctypes.c_int
    return function
