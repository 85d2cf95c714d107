"""GPU facts through NVML (``pynvml`` from nvidia-ml-py), for ``info``, health and metrics."""

from __future__ import annotations

import logging
from dataclasses import dataclass

logger = logging.getLogger(__name__)

#: Bytes in a mebibyte.
MIB = 1024 * 1024


@dataclass(frozen=True)
class GpuStatus:
    index: int
    name: str
    memory_total_mb: float
    memory_used_mb: float


def gpu_status() -> list[GpuStatus]:
    """One entry per NVIDIA GPU; empty where NVML or a driver is missing (not an error)."""
    try:
        import pynvml
    except ImportError:  # pragma: no cover - nvidia-ml-py is a dependency
        return []
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        logger.debug("NVML unavailable: %s", exc)
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
    finally:
        pynvml.nvmlShutdown()
