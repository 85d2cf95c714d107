"""Tempo and key accuracy on a corpus of music the detectors were not built beside.

The corpus (:mod:`tests.utils.music_corpus`) has its own instruments and arrangements and
covers 60-180 BPM, all 24 keys, straight and swung feels, syncopation, four sample rates, mono
and stereo. Its rules were fixed before the detectors were measured on it. A failure lists every
missed clip with what was expected and what was found.
"""

from __future__ import annotations

from collections import Counter
from functools import lru_cache

import pytest

from benchmarks.analysis_accuracy import TEMPO_TOLERANCE, tempo_is_right
from dgx_music.audio import metadata, notes
from tests.utils import music_corpus

#: One worker runs the module: the tempo and key tests share one reading of the corpus
#: (:func:`_results`, 13 s), which a second worker would repeat.
pytestmark = pytest.mark.xdist_group("analysis-corpus")

#: Clips in the corpus (3 per key) and their length, seconds.
N_CLIPS = 72
CLIP_SECONDS = 8.0
#: Share of clips each detector must get right.
REQUIRED_RATE = 0.90


def describe_tempo_miss(found: float | None, truth: float) -> str:
    """The miss, with the metrical ratio it sits at when it is a simple one (e.g. 2/3)."""
    if found is None:
        return "no tempo"
    ratio = found / truth
    for name, value in (("2/3", 2 / 3), ("3/2", 3 / 2), ("1/3", 1 / 3), ("3", 3.0), ("4/3", 4 / 3)):
        if abs(ratio / value - 1.0) <= TEMPO_TOLERANCE:
            return f"{found:.1f} BPM ({name} of the truth)"
    return f"{found:.1f} BPM (x{ratio:.3f})"


def describe_key_miss(found: str | None, truth: str) -> str:
    if found is None:
        return "no key"
    if found == notes.relative_key(truth):
        return f"{found} (the relative)"
    tonic, _, mode = truth.partition(" ")
    found_tonic, _, found_mode = found.partition(" ")
    interval = (notes.pitch_class(found_tonic) - notes.pitch_class(tonic)) % 12
    if found_mode == mode and interval in (5, 7):
        return f"{found} (a fifth away)"
    if found_tonic == tonic:
        return f"{found} (the parallel)"
    return found


@lru_cache(maxsize=1)
def _results() -> tuple[tuple[music_corpus.Clip, float | None, str | None], ...]:
    """Every clip's tempo and key, read once for both tests.

    ``tempo_and_key`` is the part of ``analyze`` that reads them, without the loudness and
    peak measurements the tests do not need (a third of the time).
    """
    results = []
    for clip in music_corpus.corpus(N_CLIPS, CLIP_SECONDS):
        tempo, _, key, _ = metadata.tempo_and_key(clip.audio, clip.sample_rate)
        results.append((clip, tempo, key))
    return tuple(results)


def test_tempo_on_the_corpus(warm_metadata: None) -> None:
    results = _results()
    misses = [
        f"{clip.description}: {describe_tempo_miss(tempo, clip.tempo_bpm)}"
        for clip, tempo, _ in results
        if not tempo_is_right(tempo, clip.tempo_bpm)
    ]
    rate = 1.0 - len(misses) / len(results)
    assert rate >= REQUIRED_RATE, (
        f"tempo right on {rate:.1%} of {len(results)} clips (need {REQUIRED_RATE:.0%}); misses:\n"
        + "\n".join(misses)
    )


def test_key_on_the_corpus(warm_metadata: None) -> None:
    results = _results()
    misses = [
        f"{clip.description}: {describe_key_miss(key, clip.key)}"
        for clip, _, key in results
        if key != clip.key
    ]
    rate = 1.0 - len(misses) / len(results)
    assert rate >= REQUIRED_RATE, (
        f"key exactly right on {rate:.1%} of {len(results)} clips (need {REQUIRED_RATE:.0%}); "
        "misses:\n" + "\n".join(misses)
    )


def test_a_two_thirds_tempo_is_not_accepted() -> None:
    # The rule itself: 150 BPM read as 100 (2/3) or 225 (3/2) is a miss, 75 and 300 are not.
    assert tempo_is_right(75.0, 150.0) and tempo_is_right(300.0, 150.0)
    assert tempo_is_right(152.9, 150.0) and not tempo_is_right(153.5, 150.0)
    assert not tempo_is_right(100.0, 150.0) and not tempo_is_right(225.0, 150.0)
    assert not tempo_is_right(None, 150.0)


@pytest.mark.parametrize("index", [0, 37])
def test_corpus_clips_are_reproducible(index: int) -> None:
    first = music_corpus.make_clip(index, N_CLIPS, 2.0)
    again = music_corpus.make_clip(index, N_CLIPS, 2.0)
    assert first.description == again.description
    assert (first.audio == again.audio).all()


def test_the_corpus_covers_what_it_promises() -> None:
    # The design, checked: every key equally often, each rate, channel count and feel balanced,
    # tempi spread over 60-180 BPM (every 20 BPM band), drums off and on, the relative-minor
    # progressions present.
    clips = music_corpus.corpus(N_CLIPS, CLIP_SECONDS)
    assert Counter(clip.key for clip in clips) == {key: N_CLIPS // 24 for key in notes.KEY_NAMES}
    for values in (
        [clip.sample_rate for clip in clips],
        [clip.audio.shape[0] for clip in clips],
        [clip.feel for clip in clips],
    ):
        counts = Counter(values)
        assert max(counts.values()) - min(counts.values()) <= 1, counts
    assert set(Counter(clip.sample_rate for clip in clips)) == set(music_corpus.SAMPLE_RATES)
    tempi = [clip.tempo_bpm for clip in clips]
    assert min(tempi) >= 60.0 and max(tempi) <= 180.0
    assert {int((tempo - 60.0) // 20) for tempo in tempi} == set(range(6))
    assert {clip.drums for clip in clips} == {"none", *music_corpus.DRUM_PATTERNS}
    assert any("vi" in clip.progression for clip in clips if clip.key.endswith("major"))
    for clip in clips:
        assert clip.audio.shape[1] == round(CLIP_SECONDS * clip.sample_rate)
        assert 0.29 <= float(abs(clip.audio).max()) <= 0.91
