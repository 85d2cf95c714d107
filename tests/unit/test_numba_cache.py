"""The lock around a process's first use of librosa's numba code (numba's cache has none).

Without it, processes starting together on a cold cache corrupted it and died with SIGSEGV
(ten pytest workers on a fresh virtual environment; two ``dgx-music worker`` processes; 3 of 6
processes in CI while the resampler's first touch, which compiles at import, ran unlocked).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import librosa
import numpy as np
import pytest

from dgx_music.audio import key, metadata, numba_cache, tempo
from tests.utils.processes import finish

#: Bounded waits for a child process, seconds.
CHILD_LIMIT = 60.0

_CHILD = """
import sys, time
from pathlib import Path
from dgx_music.audio.numba_cache import exclusive
print("ready", flush=True)
started = time.monotonic()
with exclusive(Path(sys.argv[1]), wait_limit=float(sys.argv[2])) as held:
    print(f"held={held} waited={time.monotonic() - started:.2f}", flush=True)
"""


def _start_child(lock: Path, wait_limit: float) -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(lock), str(wait_limit)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    return child


def _finish(child: subprocess.Popen[str]) -> tuple[bool, float]:
    child.wait(timeout=CHILD_LIMIT)
    assert child.stdout is not None
    out = child.stdout.read()  # not communicate(): it would miss what readline() buffered
    assert child.returncode == 0, out
    result = [line for line in out.splitlines() if line.startswith("held=")]
    assert len(result) == 1, out
    held, waited = (part.split("=")[1] for part in result[0].split())
    return held == "True", float(waited)


def test_a_second_process_waits_until_the_holder_lets_go(tmp_path: Path):
    lock = tmp_path / "cache.lock"
    with numba_cache.exclusive(lock) as held:
        assert held
        child = _start_child(lock, wait_limit=CHILD_LIMIT)
        time.sleep(1.0)
        assert child.poll() is None, "the child took a lock this process holds"
    got, waited = _finish(child)
    assert got
    assert waited >= 0.9


def test_a_free_lock_is_taken_at_once_and_released_on_exit(tmp_path: Path):
    lock = tmp_path / "cache.lock"
    with numba_cache.exclusive(lock) as held:
        assert held
    got, waited = _finish(_start_child(lock, wait_limit=CHILD_LIMIT))
    assert got
    assert waited < 0.5


def test_a_holder_that_never_lets_go_delays_others_only_up_to_the_limit(tmp_path: Path):
    lock = tmp_path / "cache.lock"
    with numba_cache.exclusive(lock):
        got, waited = _finish(_start_child(lock, wait_limit=0.5))
    assert not got, "the child claims a lock this process held throughout"
    assert 0.5 <= waited < 5.0


def test_a_second_holder_in_the_same_process_waits_only_up_to_the_limit(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    # flock belongs to the open file, not the process: a second open of the lock file waits for
    # the first like another process would, and gives up at its limit with a warning.
    lock = tmp_path / "cache.lock"
    with numba_cache.exclusive(lock) as outer:
        started = time.monotonic()
        with numba_cache.exclusive(lock, wait_limit=0.3) as inner:
            waited = time.monotonic() - started
    assert outer and not inner
    assert 0.3 <= waited < 5.0
    assert "still held by another process" in caplog.text


def test_an_unopenable_lock_file_is_not_an_error(tmp_path: Path):
    with numba_cache.exclusive(tmp_path / "missing-dir" / "cache.lock") as held:
        assert not held


def test_the_lock_file_is_per_librosa_installation():
    path = numba_cache.lock_path()
    assert path.parent.is_dir()
    assert path == numba_cache.lock_path()
    assert path.name.startswith("dgx-music-numba-")


@pytest.fixture
def first_use(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """This process made new to librosa; the cache lock and calls into librosa recorded in order."""
    events: list[str] = []

    @contextlib.contextmanager
    def recording_lock(*_args: object, **_kwargs: object) -> Iterator[bool]:
        events.append("lock")
        try:
            yield True
        finally:
            events.append("unlock")

    def recording(name: str) -> Callable[..., Any]:
        real = getattr(librosa, name)

        def record(*args: Any, **kwargs: Any) -> Any:
            events.append(name)
            return real(*args, **kwargs)

        return record

    monkeypatch.setattr(numba_cache, "exclusive", recording_lock)
    for name in ("resample", "stft", "cqt"):  # the analysis's first calls into librosa
        monkeypatch.setattr(librosa, name, recording(name))
    monkeypatch.setattr(numba_cache, "_used", set())
    return events


def first_calls_inside_the_lock(events: list[str]) -> bool:
    """Whether every librosa function's first call in ``events`` came while the lock was held."""
    held, seen = False, set()
    for event in events:
        if event in ("lock", "unlock"):
            held = event == "lock"
        elif event not in seen:
            seen.add(event)
            if not held:
                return False
    return True


def _clip(seconds: float = 3.0, rate: int = 32_000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    tone = 0.3 * np.sin(2 * np.pi * 330.0 * t)
    return np.stack([tone, tone])


def test_the_first_analysis_runs_librosa_inside_the_lock_and_later_ones_skip_it(
    first_use: list[str],
):
    metadata.analyze(_clip(), 32_000)
    # The resampler's warm-up and its real call, tempo's (stft), then key's (cqt).
    assert first_use == [
        "lock",
        "resample",
        "unlock",
        "resample",
        "lock",
        "stft",
        "unlock",
        "stft",
        "lock",
        "cqt",
        "unlock",
        "cqt",
    ]
    calls = len(first_use)
    metadata.analyze(_clip(), 32_000)
    assert first_use[calls:] == ["resample", "stft", "cqt"]


@pytest.mark.parametrize(
    ("entry", "locks"), [("estimate_tempo", 1), ("estimate_key", 1), ("tempo_and_key", 3)]
)
def test_every_public_entry_into_librosa_takes_the_lock_first(
    first_use: list[str], entry: str, locks: int
):
    clip = _clip()
    mono = clip.mean(axis=0).astype(np.float32)
    if entry == "tempo_and_key":
        metadata.tempo_and_key(clip, 32_000)
    elif entry == "estimate_tempo":
        tempo.estimate_tempo(mono, 22_050)
    else:
        key.estimate_key(mono, 22_050)
    assert first_use.count("lock") == locks
    assert first_calls_inside_the_lock(first_use), first_use


def test_threads_of_one_process_take_each_lock_once(first_use: list[str]):
    threads = [threading.Thread(target=metadata.analyze, args=(_clip(), 32_000)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=CHILD_LIMIT)
    assert first_use.count("lock") == 3  # the resampler's warm-up, tempo's and key's, each once
    assert first_calls_inside_the_lock(first_use), first_use
    assert first_use.count("stft") == 5  # the warm-up clip, then the four analyses


_ANALYSE = """
import contextlib, sys
import numpy as np
from dgx_music.audio import metadata, numba_cache
real = numba_cache.exclusive

@contextlib.contextmanager
def marked(*args, **kwargs):
    with real(*args, **kwargs) as held:
        print("LOCK", held, flush=True)
        yield held
        print("UNLOCK", flush=True)

numba_cache.exclusive = marked
noise = np.random.default_rng(0).standard_normal((2, 4 * 32_000))
metadata.analyze(0.1 * noise, 32_000)
"""


@pytest.mark.slow
def test_a_cold_process_writes_numba_cache_only_while_it_holds_the_lock(tmp_path: Path):
    # numba's cache is safe when one process at a time writes it: a CI run on a cold cache lost
    # 3 of 6 processes started together to SIGSEGV while the first ``librosa.resample`` (whose
    # import compiles and caches librosa's vectorised functions) ran outside the lock. Six racing
    # processes crash only now and then; where a cold process writes is the same every time.
    # NUMBA_DEBUG_CACHE makes numba print each index and data file it saves.
    # The child runs without coverage: tracing numba's compiler made its compile much slower.
    env = {name: value for name, value in os.environ.items() if not name.startswith("COVERAGE_")}
    # Where the cache is written does not depend on how well the code is optimised: NUMBA_OPT=0
    # makes the child's compile 4 s shorter (15 -> 11 s).
    env.update(
        NUMBA_CACHE_DIR=str(tmp_path / "numba"),
        NUMBA_DEBUG_CACHE="1",
        NUMBA_OPT="0",
        OMP_NUM_THREADS="1",
    )
    child = subprocess.Popen(
        [sys.executable, "-c", _ANALYSE],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    out = finish(child, timeout=600)
    assert child.returncode == 0, out[-2000:]
    held, saves, outside = False, 0, []
    for line in out.splitlines():
        if line.startswith(("LOCK", "UNLOCK")):
            assert line != "LOCK False", "the child went on without the lock"
            held = line.startswith("LOCK")
        elif line.startswith("[cache]") and " saved to " in line:
            saves += 1
            if not held:
                outside.append(line)
    assert saves > 0, "the child wrote nothing to the given cache: " + out[-2000:]
    assert not outside, f"{len(outside)} of {saves} cache writes outside the lock: {outside[:5]}"
