"""The real-music corpus's rules (benchmarks/real_music.py): key and metre truth from the score,
transposition, the plan of keys, tempos, drums and halves, and one clip rendered end to end."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from benchmarks import real_music
from benchmarks.real_music import Piece
from dgx_music.audio.notes import PITCH_CLASS_NAMES
from tests.conftest import skip_or_fail


@pytest.mark.parametrize(
    ("sharps", "final", "key"),
    [
        (0, "C", "C major"),
        (0, "A", "A minor"),
        (1, "G", "G major"),
        (1, "E", "E minor"),
        (-3, "C", "C minor"),
        (-3, "D#", "D# major"),  # E-flat major, named with sharps as the analysis names it
        (6, "F#", "F# major"),
        (0, "D", None),  # D Dorian: left out
        (-1, "G", None),  # G minor written with a Dorian signature: left out
        (1, "D", None),  # ends on the dominant: left out
    ],
)
def test_the_key_comes_from_the_signature_and_the_final_bass_note(
    sharps: int, final: str, key: str | None
):
    assert real_music.key_from_signature(sharps, PITCH_CLASS_NAMES.index(final)) == key


@pytest.mark.parametrize(
    ("metre", "quarters"),
    [("2/4", 1.0), ("3/4", 1.0), ("4/4", 1.0), ("6/8", 1.5), ("9/8", 1.5), ("12/8", 1.5)],
)
def test_the_beat_is_the_notated_beat(metre: str, quarters: float):
    assert real_music.beat_quarters(metre) == quarters


@pytest.mark.parametrize("metre", ["2/2", "3/8", "5/4", "7/8"])
def test_other_metres_are_left_out(metre: str):
    assert real_music.beat_quarters(metre) is None


@pytest.mark.parametrize(
    ("source", "target", "semitones"),
    [
        ("C major", "G major", -5),
        ("C major", "F major", 5),
        ("A minor", "D minor", 5),
        ("F# major", "C major", -6),
        ("E minor", "E minor", 0),
    ],
)
def test_a_piece_moves_by_the_smallest_transposition(source: str, target: str, semitones: int):
    assert real_music.transposition(source, target) == semitones


def test_a_transposition_never_changes_the_mode():
    with pytest.raises(ValueError, match="same mode"):
        real_music.transposition("C major", "A minor")


def synthetic_pieces() -> list[Piece]:
    """As many pieces of each texture as the corpus takes, half major and half minor."""
    pieces = []
    for texture, (_, wanted, _) in real_music.TEXTURES.items():
        for index in range(wanted):
            key = "C major" if index % 2 == 0 else "A minor"
            metre = "6/8" if index % 3 == 0 else "3/4"
            split = "tune" if index % 2 == 0 else "held-out"
            pieces.append(Piece(f"{texture}/{index}", texture, key, metre, split))
    return pieces


def test_the_plan_covers_every_key_tempo_and_texture(tmp_path: Path):
    pieces = synthetic_pieces()
    clips = real_music.plan(pieces, tmp_path)
    assert len(clips) >= 120 and len({clip.piece.source for clip in clips}) >= 80
    # All 24 keys; a piece in at most two.
    assert {clip.key for clip in clips} == {
        f"{name} {mode}" for name in PITCH_CLASS_NAMES for mode in ("major", "minor")
    }
    keys_per_piece = Counter(clip.piece.source for clip in clips)
    assert max(keys_per_piece.values()) <= 2
    # Every clip in its piece's key moved by its transposition.
    for clip in clips:
        assert real_music.transposition(clip.piece.key, clip.key) == clip.transpose
    # Tempos: one in each of len(clips) equal slices of 60-180 BPM.
    low, high = real_music.TEMPO_RANGE
    width = (high - low) / len(clips)
    slices = sorted(int((clip.bpm - low) // width) for clip in clips)
    assert slices == list(range(len(clips)))
    assert all(low <= clip.bpm <= high for clip in clips)
    # Half the clips have drums; every texture has clips with and without.
    assert sum(clip.percussion for clip in clips) == len(clips) // 2
    for texture in real_music.TEXTURES:
        assert {clip.percussion for clip in clips if clip.texture == texture} == {True, False}


def test_the_halves_split_by_piece_and_hold_every_texture(tmp_path: Path):
    clips = real_music.plan(synthetic_pieces(), tmp_path)
    halves: dict[str, set[str]] = {}
    for clip in clips:
        halves.setdefault(clip.piece.source, set()).add(clip.split)
    assert all(len(splits) == 1 for splits in halves.values())
    for texture in real_music.TEXTURES:
        assert {clip.split for clip in clips if clip.texture == texture} == {"tune", "held-out"}


def test_the_benchmarks_subset_is_fixed_held_out_and_mixed(tmp_path: Path):
    clips = real_music.plan(synthetic_pieces(), tmp_path)
    chosen = real_music.subset(clips)
    assert len(chosen) == real_music.SUBSET_SIZE == len(set(chosen))
    assert {clip.split for clip in chosen} == {"held-out"}
    assert {clip.texture for clip in chosen} == set(real_music.TEXTURES)
    assert {clip.percussion for clip in chosen} == {True, False}
    assert chosen == real_music.subset(real_music.plan(synthetic_pieces(), tmp_path))


def test_a_chorale_renders_to_30_s_of_its_key(tmp_path: Path):
    reason = real_music.missing_tools()
    if reason is not None:
        skip_or_fail(reason)
    import numpy as np
    import soundfile as sf
    from music21 import corpus

    score = corpus.parse("bach/bwv10.7.mxl")
    key, metre = real_music._score_truth(score)
    assert (key, metre) == ("G minor", "4/4")  # two flats, ending on G in the bass
    piece = Piece("bach/bwv10.7.mxl", "four-part", key, metre, "tune")
    clip = real_music.plan([piece], tmp_path)[1]  # its second key, with drums
    assert clip.key == "C# minor" and clip.percussion
    real_music.render(clip, score)
    audio, rate = sf.read(clip.path, always_2d=True)
    assert rate == real_music.SAMPLE_RATE and audio.shape == (30 * rate, 2)
    # Sound from start to end: every second of it holds notes (the score loops to fill 30 s).
    seconds = audio[: 30 * rate].reshape(30, rate, 2)
    assert np.all(np.sqrt((seconds**2).mean(axis=(1, 2))) > 0.01)
    assert not list(tmp_path.glob("*.mid")) and not list(tmp_path.glob("*.raw.wav"))
