"""GPU facts through NVML (``pynvml`` from nvidia-ml-py), for ``info``, health and metrics.

NVML is initialised once per process and left initialised: ``/health`` and ``/metrics`` ask on
every call, and initialising it each time cost a fifth of a millisecond where there is no
driver (and more where there is). Where it cannot start, it is tried again only after
:data:`NVML_RETRY_SECONDS`.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from types import ModuleType

logger = logging.getLogger(__name__)

#: Bytes in a mebibyte.
MIB = 1024 * 1024
#: After NVML failed to start, how long to answer "no GPU" before trying again, seconds.
NVML_RETRY_SECONDS = 60.0

_nvml_lock = threading.Lock()
_nvml_started = False
_nvml_failed_at: float | None = None


@dataclass(frozen=True)
class GpuStatus:
    index: int
    name: str
    memory_total_mb: float
    memory_used_mb: float


def _started_nvml() -> ModuleType | None:
    """pynvml, initialised; ``None`` where NVML or a driver is missing."""
    global _nvml_started, _nvml_failed_at
    with _nvml_lock:
        if _nvml_started:
            return _pynvml()
        if _nvml_failed_at is not None and time.monotonic() - _nvml_failed_at < NVML_RETRY_SECONDS:
            return None
        pynvml = _pynvml()
        if pynvml is None:
            return None
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:
            logger.debug("NVML unavailable: %s", exc)
            _nvml_failed_at = time.monotonic()
            return None
        _nvml_started = True
        return pynvml


def _pynvml() -> ModuleType | None:
    try:
        import pynvml
    except ImportError:  # pragma: no cover - nvidia-ml-py is a dependency
        return None
    return pynvml


def gpu_status() -> list[GpuStatus]:
    """One entry per NVIDIA GPU; empty where NVML or a driver is missing (not an error)."""
    pynvml = _started_nvml()
    if pynvml is None:
        return []
    try:
        statuses = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            name = pynvml.nvmlDeviceGetName(handle)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            statuses.append(
                GpuStatus(
                    index=index,
                    name=name.decode() if isinstance(name, bytes) else str(name),
                    memory_total_mb=memory.total / MIB,
                    memory_used_mb=memory.used / MIB,
                )
            )
        return statuses
    except pynvml.NVMLError as exc:  # pragma: no cover - needs a broken driver
        logger.warning("NVML query failed: %s", exc)
        return []
