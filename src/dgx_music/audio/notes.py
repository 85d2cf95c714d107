"""Note and key names, in one scheme for the analysis, the synth and the tests.

Pure Python on purpose: the synth names its keys with these, and loading it must not load
librosa or numba (the analysis's imports), which cost seconds in a fresh process.
"""

from __future__ import annotations

#: The 12 pitch-class names, index = semitones above C. The one source of key names.
PITCH_CLASS_NAMES: tuple[str, ...] = (
    "C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B",
)  # fmt: skip
#: The two modes a key can have.
MODES: tuple[str, ...] = ("major", "minor")
#: All 24 key names: the 12 major keys from C, then the 12 minor keys from C.
KEY_NAMES: tuple[str, ...] = tuple(
    f"{tonic} {mode}" for mode in MODES for tonic in PITCH_CLASS_NAMES
)

_NATURALS = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
_ACCIDENTALS = {"": 0, "#": 1, "♯": 1, "b": -1, "♭": -1}


def pitch_class(name: str) -> int:
    """Pitch class 0..11 of a note name: ``"C"``, ``"c#"``, ``"Db"``, ``"E♭"``, ``"B#"`` (= 0).

    Raises
    ------
    ValueError
        When ``name`` is not a letter A..G followed by at most one accidental.
    """
    text = name.strip()
    letter, accidental = text[:1].upper(), text[1:]
    if letter not in _NATURALS or accidental.lower() not in _ACCIDENTALS:
        raise ValueError(f"not a note name: {name!r} (expected e.g. 'C', 'F#', 'Bb')")
    return (_NATURALS[letter] + _ACCIDENTALS[accidental.lower()]) % 12


def key_name(tonic: int, mode: str) -> str:
    """The name of a key in the shared scheme: ``key_name(9, "minor") == "A minor"``."""
    if mode not in MODES:
        raise ValueError(f"mode must be 'major' or 'minor', got {mode!r}")
    return f"{PITCH_CLASS_NAMES[tonic % 12]} {mode}"


def relative_key(key: str) -> str:
    """The relative major of a minor key and vice versa: ``"A minor"`` <-> ``"C major"``."""
    tonic, _, mode = key.partition(" ")
    if mode == "minor":
        return key_name(pitch_class(tonic) + 3, "major")
    return key_name(pitch_class(tonic) - 3, "minor")
