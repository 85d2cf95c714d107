"""Real music with a known key and tempo: scores from music21's corpus, played by FluidSynth.

The metadata was tuned on music the project makes itself. This corpus is compositions by real
composers and folk traditions, played by a sampled General MIDI soundfont (Debian's
``fluid-soundfont-gm``), so tempo and key can be measured on music nobody wrote for the
detectors. The audio is never stored in git: :func:`build` renders it into a cache directory
(``python -m benchmarks.real_music build``; ``.ci/run`` and the benchmarks call it).

Rules, fixed before the detectors were measured on the corpus (change a rule and every figure
measured on the corpus changes meaning; add pieces instead):

* **Pieces.** Three textures: ``four-part`` (Bach's chorales), ``solo`` (fiddle tunes and folk
  songs: one line), ``dense`` (string quartets, rags, piano pieces). Pieces are taken in the
  sorted order of their corpus paths until each texture has its quota.
* **Key truth** comes from the score: the first key signature, and the final note of the lowest
  part. The piece is in the signature's major key when that note is its tonic, in the relative
  minor when it is that tonic, and is left out otherwise (modal pieces, Dorian signatures,
  Phrygian endings, pieces that end on the dominant).
* **Metre.** 2/4, 3/4 and 4/4 beat in quarters; 6/8, 9/8 and 12/8 in dotted quarters; pieces in
  any other metre (or changing metre) are left out. The tempo is counted in those beats.
* **Keys.** Every piece is played in one or two of the 24 keys, moved from its own by the
  smallest transposition (-6..+5 semitones). Major pieces take the major keys in turn, minor
  pieces the minor keys, so every key is played.
* **Tempo.** Stratified over 60-180 BPM: clip ``i`` draws uniformly from the ``perm[i]``-th of
  ``n`` equal slices of the range, whatever the piece's own marking says.
* **Percussion.** Every other clip gets a General MIDI drum kit playing a pattern of its metre
  (kick on the first beat, snare on the others or the back beats, hi-hat on the eighths).
* **Instruments.** Each clip takes one ensemble of :data:`ENSEMBLES` for its texture, by a seeded
  draw; velocities are accented on the beats with a small seeded spread.
* **Length.** 30 s from the first note; a piece shorter than that at its tempo is played again
  from the start.
* **Split.** Within each texture, pieces alternate between the ``tune`` half (for choosing
  profiles, thresholds and calibration) and the ``held-out`` half (for the accuracy targets):
  a piece's clips are always in one half.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Bump when a rule above changes: the cache directory is keyed by it.
CORPUS_VERSION = 1
#: Debian's sampled General MIDI soundfont (package fluid-soundfont-gm).
SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
SAMPLE_RATE = 32_000
CLIP_SECONDS = 30.0
TEMPO_RANGE = (60.0, 180.0)
SEED = 18
#: Clips in the fixed subset whose accuracy the benchmarks track (:func:`subset`).
SUBSET_SIZE = 24

#: Texture: (corpus composers or collections to draw from, pieces wanted, clips per piece).
TEXTURES: dict[str, tuple[tuple[str, ...], int, int]] = {
    "four-part": (("bach",), 36, 2),
    "solo": (("ryansMammoth",), 32, 1),
    "dense": (("joplin", "handel", "haydn", "mozart", "beethoven"), 16, 2),
}
#: General MIDI programs, one per part from the top down; the last repeats for extra parts.
ENSEMBLES: dict[str, tuple[tuple[int, ...], ...]] = {
    "four-part": (
        (40, 40, 41, 42),  # string quartet
        (19, 19, 19, 19),  # church organ
        (52, 52, 52, 52),  # choir
        (73, 68, 71, 70),  # flute, oboe, clarinet, bassoon
        (56, 60, 57, 58),  # trumpet, horn, trombone, tuba
        (0, 0, 0, 0),  # piano
    ),
    "solo": ((40,), (110,), (73,), (21,), (71,), (24,), (0,), (22,)),
    "dense": ((40, 40, 41, 42), (0,), (3,), (6,), (48, 48, 48, 43)),
}
MAJOR_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
SIMPLE_METRES = {"2/4", "3/4", "4/4"}
COMPOUND_METRES = {"6/8", "9/8", "12/8"}
#: General MIDI drum notes.
KICK, SNARE, HAT = 36, 38, 42


@dataclass(frozen=True)
class Piece:
    """A score that passed the rules: where it is, its texture, key and metre."""

    source: str
    texture: str
    key: str  # e.g. "A minor", sharps only
    metre: str
    split: str  # "tune" or "held-out"


@dataclass(frozen=True)
class Clip:
    """One 30 s clip: a piece in a key at a tempo, with or without drums."""

    name: str
    piece: Piece
    key: str
    transpose: int  # semitones from the piece's key
    bpm: float  # in the notated beat
    percussion: bool
    programs: tuple[int, ...]
    path: Path

    @property
    def texture(self) -> str:
        return self.piece.texture

    @property
    def split(self) -> str:
        return self.piece.split


# --- Key and metre truth ---------------------------------------------------------------------


def key_from_signature(sharps: int, final_pitch_class: int) -> str | None:
    """The key a signature of ``sharps`` (negative: flats) and a final bass note name, or
    ``None`` when the note is neither the major nor the relative minor tonic."""
    major = (7 * sharps) % 12
    if final_pitch_class == major:
        return f"{MAJOR_NAMES[major]} major"
    minor = (major + 9) % 12
    if final_pitch_class == minor:
        return f"{MAJOR_NAMES[minor]} minor"
    return None


def beat_quarters(metre: str) -> float | None:
    """Quarter notes in the notated beat of ``metre``, or ``None`` for a metre left out."""
    if metre in SIMPLE_METRES:
        return 1.0
    if metre in COMPOUND_METRES:
        return 1.5
    return None


def beats_per_bar(metre: str) -> int:
    """Notated beats in a bar of ``metre`` (one of the metres :func:`beat_quarters` keeps)."""
    numerator = int(metre.split("/")[0])
    return numerator // 3 if metre in COMPOUND_METRES else numerator


def transposition(source_key: str, target_key: str) -> int:
    """The smallest move (-6..+5 semitones) from one key to another of the same mode."""
    tonic, _, mode = source_key.partition(" ")
    target, _, target_mode = target_key.partition(" ")
    if mode != target_mode:
        raise ValueError(f"{source_key} and {target_key} are not in the same mode")
    step = (MAJOR_NAMES.index(target) - MAJOR_NAMES.index(tonic)) % 12
    return step - 12 if step > 5 else step


def _score_truth(score: Any) -> tuple[str | None, str | None]:
    """(key, metre) of a music21 score by the rules above; either is ``None`` when left out."""
    from music21 import key as m21key
    from music21 import meter

    signatures = list(score.recurse().getElementsByClass(m21key.KeySignature))
    metres = {ts.ratioString for ts in score.recurse().getElementsByClass(meter.TimeSignature)}
    metre = metres.pop() if len(metres) == 1 else None
    if not signatures or metre is None or beat_quarters(metre) is None:
        return None, metre
    parts = list(score.parts) or [score]
    lowest = parts[-1].flatten().notes
    if not lowest:
        return None, metre
    final = lowest[-1]
    pitch = min(final.pitches, key=lambda p: p.ps)
    return key_from_signature(signatures[0].sharps, pitch.pitchClass), metre


# --- Choosing pieces and clips ---------------------------------------------------------------


def _candidates(collections: Sequence[str]) -> Iterator[tuple[str, Any]]:
    """(source name, score) of every score in the collections, in sorted path order; an opus
    (a file of many tunes) gives each tune as ``path#number``."""
    from music21 import corpus, stream

    for collection in collections:
        for path in sorted(str(p) for p in corpus.getComposer(collection)):
            try:
                parsed = corpus.parse(path)
            except Exception:  # a score music21 cannot read is left out, as the rules allow
                continue
            relative = path.split("/corpus/", 1)[-1]
            if isinstance(parsed, stream.Opus):
                for number, score in enumerate(parsed.scores):
                    yield f"{relative}#{number}", score
            else:
                yield relative, parsed


def choose_pieces() -> list[tuple[Piece, Any]]:
    """The pieces of each texture, with their parsed scores, by the rules above."""
    chosen: list[tuple[Piece, Any]] = []
    for texture, (collections, wanted, _) in TEXTURES.items():
        found = 0
        for source, score in _candidates(collections):
            if found == wanted:
                break
            parts = len(score.parts) if score.parts else 1
            if (texture == "solo") != (parts == 1) or (texture == "four-part" and parts != 4):
                continue
            key, metre = _score_truth(score)
            if key is None or metre is None:
                continue
            split = "tune" if found % 2 == 0 else "held-out"
            chosen.append((Piece(source, texture, key, metre, split), score))
            found += 1
    return chosen


def plan(pieces: Sequence[Piece], directory: Path) -> list[Clip]:
    """Every clip of the corpus: keys in turn per mode, stratified tempos, drums every other."""
    import numpy as np

    rng = np.random.default_rng(SEED)
    turn = {"major": 0, "minor": 0}
    specs: list[tuple[Piece, str]] = []
    for piece in pieces:
        mode = piece.key.partition(" ")[2]
        for _ in range(TEXTURES[piece.texture][2]):
            specs.append((piece, f"{MAJOR_NAMES[turn[mode] % 12]} {mode}"))
            turn[mode] += 1
    order = rng.permutation(len(specs))
    low, high = TEMPO_RANGE
    width = (high - low) / len(specs)
    clips = []
    for index, (piece, target) in enumerate(specs):
        bpm = float(low + width * (order[index] + rng.uniform()))
        ensembles = ENSEMBLES[piece.texture]
        programs = ensembles[int(rng.integers(len(ensembles)))]
        name = f"{index:03d}-{piece.texture}-{target.replace(' ', '-').replace('#', 's')}"
        clips.append(
            Clip(
                name=name,
                piece=piece,
                key=target,
                transpose=transposition(piece.key, target),
                bpm=bpm,
                percussion=index % 2 == 1,
                programs=programs,
                path=directory / f"{name}.wav",
            )
        )
    return clips


# --- Rendering -------------------------------------------------------------------------------


def _notes(score: Any) -> list[list[tuple[float, float, int]]]:
    """Each part's notes as (onset, length, MIDI pitch), in quarter notes, ties merged."""
    parts = list(score.parts) or [score]
    out = []
    for part in parts:
        notes = []
        for element in part.stripTies().flatten().notes:
            length = float(element.quarterLength)
            if length <= 0:  # grace notes
                continue
            for pitch in element.pitches:
                notes.append((float(element.offset), length, int(pitch.midi)))
        out.append(notes)
    return out


def _midi(clip: Clip, score: Any, rng: Any) -> Any:
    """The clip as a pretty_midi object: the score at its tempo, looped to fill the clip."""
    import numpy as np
    import pretty_midi

    beat_q = beat_quarters(clip.piece.metre)
    assert beat_q is not None
    seconds_per_quarter = 60.0 / (clip.bpm * beat_q)
    parts = _notes(score)
    first = min(onset for part in parts for onset, _, _ in part)
    span = max(onset + length for part in parts for onset, length, _ in part) - first
    bar_q = beats_per_bar(clip.piece.metre) * beat_q
    span = math.ceil(span / bar_q - 1e-9) * bar_q  # loop on whole bars
    loops = math.ceil(CLIP_SECONDS / (span * seconds_per_quarter)) + 1
    midi = pretty_midi.PrettyMIDI(initial_tempo=60.0 / seconds_per_quarter)
    for index, part in enumerate(parts):
        program = clip.programs[min(index, len(clip.programs) - 1)]
        instrument = pretty_midi.Instrument(program=program)
        for loop in range(loops):
            for onset, length, pitch in part:
                at = (onset - first + loop * span) * seconds_per_quarter
                if at >= CLIP_SECONDS:
                    continue
                on_beat = abs((onset / beat_q) - round(onset / beat_q)) < 1e-6
                velocity = int(np.clip(rng.normal(88 if on_beat else 72, 6), 30, 120))
                end = at + length * seconds_per_quarter * 0.95
                instrument.notes.append(pretty_midi.Note(velocity, pitch + clip.transpose, at, end))
        midi.instruments.append(instrument)
    if clip.percussion:
        midi.instruments.append(_drums(clip, seconds_per_quarter, rng))
    return midi


def _drums(clip: Clip, seconds_per_quarter: float, rng: Any) -> Any:
    """A drum kit playing the metre from the first note: kick on beat 1, snare on the other
    beats of a bar of two or three (the back beats of four), hi-hat on every eighth."""
    import pretty_midi

    drums = pretty_midi.Instrument(program=0, is_drum=True)
    beat_q = beat_quarters(clip.piece.metre)
    assert beat_q is not None
    bar = beats_per_bar(clip.piece.metre)
    beat_s = beat_q * seconds_per_quarter
    eighth_s = seconds_per_quarter / 2
    beat = 0
    while beat * beat_s < CLIP_SECONDS:
        at = beat * beat_s
        position = beat % bar
        hit = KICK if position == 0 or (bar == 4 and position == 2) else SNARE
        drums.notes.append(pretty_midi.Note(int(rng.integers(96, 112)), hit, at, at + 0.1))
        beat += 1
    eighth = 0
    while eighth * eighth_s < CLIP_SECONDS:
        at = eighth * eighth_s
        drums.notes.append(pretty_midi.Note(int(rng.integers(50, 70)), HAT, at, at + 0.05))
        eighth += 1
    return drums


def render(clip: Clip, score: Any, soundfont: Path = SOUNDFONT) -> None:
    """Write ``clip.path``: 30 s of 32 kHz stereo PCM16 from FluidSynth."""
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng((SEED, int(clip.name[:3])))
    midi_path = clip.path.with_suffix(".mid")
    _midi(clip, score, rng).write(str(midi_path))
    raw = clip.path.with_suffix(".raw.wav")
    subprocess.run(
        [
            "fluidsynth",
            *("-ni", "-q", "-g", "0.5", "-r", str(SAMPLE_RATE), "-F", str(raw)),
            str(soundfont),
            str(midi_path),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    audio, rate = sf.read(raw, always_2d=True)
    assert rate == SAMPLE_RATE, rate
    audio = audio[: int(CLIP_SECONDS * SAMPLE_RATE)]
    peak = float(np.max(np.abs(audio))) or 1.0
    sf.write(clip.path, audio * (0.9 / peak), SAMPLE_RATE, subtype="PCM_16")
    raw.unlink()
    midi_path.unlink()


# --- The corpus as a whole -------------------------------------------------------------------


def missing_tools() -> str | None:
    """Why the corpus cannot be built here, or ``None`` when it can."""
    if shutil.which("fluidsynth") is None or not SOUNDFONT.exists():
        return (
            "FluidSynth and its soundfont are missing: "
            "apt-get install fluidsynth fluid-soundfont-gm"
        )
    for module in ("music21", "pretty_midi", "soundfile"):
        try:
            __import__(module)
        except ImportError:
            return f"{module} is missing: pip install -e '.[corpus]'"
    return None


def default_directory() -> Path:
    """Where the corpus is cached: ``$DGX_MUSIC_CORPUS_DIR`` or ``~/.cache/dgx-music``, one
    folder per :data:`CORPUS_VERSION` and content of this file (any edit renders it anew)."""
    import os

    root = os.environ.get("DGX_MUSIC_CORPUS_DIR") or str(Path.home() / ".cache" / "dgx-music")
    digest = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]
    return Path(root) / f"real-music-v{CORPUS_VERSION}-{digest}"


def subset(clips: Sequence[Clip]) -> list[Clip]:
    """The fixed subset the benchmarks track: :data:`SUBSET_SIZE` held-out clips, evenly spaced
    in corpus order (so the textures, keys and drums come in about their corpus shares)."""
    held_out = [clip for clip in clips if clip.split == "held-out"]
    return [held_out[(i * len(held_out)) // SUBSET_SIZE] for i in range(SUBSET_SIZE)]


def build(
    directory: Path | None = None, progress: bool = False, only_subset: bool = False
) -> list[Clip]:
    """Render every clip not rendered yet and write the index; return the clips.

    With ``only_subset``, render and return only :func:`subset` (a benchmark's set-up: about a
    fifth of the time) and write no index.
    """
    directory = directory or default_directory()
    index_path = directory / "index.json"
    if index_path.exists():
        clips = load(directory)
        return subset(clips) if only_subset else clips
    reason = missing_tools()
    if reason is not None:
        raise RuntimeError(reason)
    directory.mkdir(parents=True, exist_ok=True)
    chosen = choose_pieces()
    scores = {piece.source: score for piece, score in chosen}
    clips = plan([piece for piece, _ in chosen], directory)
    wanted = subset(clips) if only_subset else clips
    for number, clip in enumerate(wanted, start=1):
        if not clip.path.exists():
            render(clip, scores[clip.piece.source])
        if progress:
            print(f"{number}/{len(wanted)} {clip.name} {clip.piece.source}", file=sys.stderr)
    if only_subset:
        return wanted
    rows = [
        {
            **dataclasses.asdict(clip),
            "path": clip.path.name,
            "piece": dataclasses.asdict(clip.piece),
        }
        for clip in clips
    ]
    index_path.write_text(json.dumps(rows, indent=1))
    return clips


def load(directory: Path | None = None) -> list[Clip]:
    """The clips of a built corpus, from its index."""
    directory = directory or default_directory()
    rows = json.loads((directory / "index.json").read_text())
    return [
        Clip(
            **{
                **row,
                "piece": Piece(**row["piece"]),
                "programs": tuple(row["programs"]),
                "path": directory / row["path"],
            }
        )
        for row in rows
    ]


if __name__ == "__main__":
    if sys.argv[1:] != ["build"]:
        sys.exit("usage: python -m benchmarks.real_music build")
    built = build(progress=True)
    print(f"{len(built)} clips in {default_directory()}")
