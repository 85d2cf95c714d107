"""A seeded corpus of short synthetic songs with known tempo and key, independent of the synth.

The tempo and key detectors of :mod:`dgx_music.audio.metadata` were built beside
:mod:`dgx_music.generation.synth`; this module makes music they were not built beside, with its
own instruments and arrangements, so their accuracy can be measured on material they never saw.
Nothing here imports the synth.

The corpus was designed, and its rules written down, before the detectors were measured on it.
Changing a rule changes what the accuracy figures mean: add clips or rules, do not retune the
existing ones to suit an algorithm.

Rules (each clip ``i`` of ``n`` is drawn from ``numpy.random.default_rng((seed, i))``):

* Key: the 24 keys in turn (``KEY_NAMES[i % 24]``), so every key appears equally often.
  Tuning is off A440 by a uniform -10..+10 cents, as live and detuned recordings are.
* Tempo: stratified over 60-180 BPM: clip ``i`` takes a uniform draw from the ``perm[i]``-th of
  ``n`` equal slices (``perm`` a seeded permutation), so the range is covered evenly.
* Metre: 4/4. Feel: straight (the off-beat eighth at 0.5 of the beat) or swung (off-beat at
  0.58..0.67 of the beat).
* Sample rate 22 050, 32 000, 44 100 or 48 000 Hz, mono or stereo, straight or swung: each
  value equally often (to within one), assigned by a seeded permutation per factor.
* Harmony: a loop of four chords from :data:`MAJOR_PROGRESSIONS` or :data:`MINOR_PROGRESSIONS`,
  one chord per bar (per half bar below 90 BPM). Every loop starts on the tonic chord, the tonic
  chord lasts at least as long as any other chord, and every loop has a dominant (V or V7;
  in minor keys the harmonic-minor V with the raised leading tone) or gives the tonic twice
  the time of any other chord. Three of the five major loops give the relative-minor chord
  (vi) as much time as the tonic: that is the relative-key trap.
* Melody: eighth notes (rests with probability 0.15) from the key's scale (natural minor, with
  the raised seventh over a major V), chord tones on the beats, syncopated clips anticipate
  some beats by an eighth; each four-bar phrase ends on the tonic.
* Bass: chord roots on beat 1 and 3 (fifths on beat 3 in half the clips), an octave below.
* Drums (noise and sine only): one of :data:`DRUM_PATTERNS`, including off-beat-only hi-hats
  (the 2/3-tempo trap) and a syncopated kick; one clip in eight has no drums at all.
* Timbres: the chords, bass and melody each take one of the instruments below: Karplus-Strong
  pluck, FM bell (inharmonic 1:1.4 ratio), detuned sawtooth pad, decaying sine "piano".
* Mix: instruments at seeded levels; stereo clips pan them apart; the clip is scaled to a
  seeded peak of 0.3..0.9.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.signal import butter, sosfilt

#: Key names in the scheme dgx_music uses (sharps, ``"<tonic> major|minor"``), C major first.
PITCH_CLASS_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
KEY_NAMES = tuple(f"{tonic} {mode}" for mode in ("major", "minor") for tonic in PITCH_CLASS_NAMES)
SAMPLE_RATES = (22_050, 32_000, 44_100, 48_000)  # Hz
TEMPO_RANGE = (60.0, 180.0)  # BPM
MAX_DETUNE_CENTS = 10.0
SWING_RANGE = (0.58, 0.67)  # off-beat eighth position, fraction of the beat
SLOW_CHORD_BPM = 90.0  # below this, chords change every half bar
DEFAULT_SEED = 20261201

MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)
MINOR_SCALE = (0, 2, 3, 5, 7, 8, 10)  # natural minor

#: Chords as (root in semitones above the tonic, quality). "7" is a dominant seventh.
_MAJOR_CHORDS = {
    "I": (0, "maj"), "ii": (2, "min"), "IV": (5, "maj"), "V": (7, "maj"), "V7": (7, "7"),
    "vi": (9, "min"),
}  # fmt: skip
_MINOR_CHORDS = {
    "i": (0, "min"), "iv": (5, "min"), "V7": (7, "7"), "VI": (8, "maj"), "VII": (10, "maj"),
    "III": (3, "maj"),
}  # fmt: skip
_QUALITIES = {"maj": (0, 4, 7), "min": (0, 3, 7), "7": (0, 4, 7, 10)}

#: Major loops; the last three give vi as much time as I (the relative-minor trap).
MAJOR_PROGRESSIONS = (
    ("I", "IV", "V7", "I"),
    ("I", "IV", "I", "V"),
    ("I", "vi", "IV", "V7"),
    ("I", "V", "vi", "IV"),
    ("I", "vi", "ii", "V7"),
)
#: Minor loops; the harmonic-minor V7 carries the raised leading tone.
MINOR_PROGRESSIONS = (
    ("i", "iv", "V7", "i"),
    ("i", "VI", "VII", "i"),
    ("i", "VII", "VI", "V7"),
    ("i", "iv", "VI", "V7"),
    ("i", "III", "iv", "V7"),
)

#: Drum patterns over one bar of eight eighths: (kick, snare, hat) onset lists in eighths.
DRUM_PATTERNS = {
    "backbeat": ((0, 4), (2, 6), (0, 1, 2, 3, 4, 5, 6, 7)),
    "four_on_floor_offbeat_hats": ((0, 2, 4, 6), (2, 6), (1, 3, 5, 7)),
    "syncopated_kick": ((0, 3, 5), (2, 6), (0, 1, 2, 3, 4, 5, 6, 7)),
    "halftime": ((0, 5), (4,), (0, 2, 4, 6)),
    "offbeat_hats_only": ((0, 4), (), (1, 3, 5, 7)),
}
INSTRUMENTS = ("pluck", "bell", "pad", "piano")


@dataclass(frozen=True)
class Clip:
    """One generated song and the truth it was built from."""

    index: int
    audio: np.ndarray  #: float64, (channels, samples), peak 0.3..0.9
    sample_rate: int  #: Hz
    tempo_bpm: float
    key: str
    feel: str  #: "straight" or "swing"
    drums: str  #: a DRUM_PATTERNS name or "none"
    progression: tuple[str, ...]
    instruments: tuple[str, str, str]  #: chords, bass, melody

    @property
    def description(self) -> str:
        channels = "stereo" if self.audio.shape[0] == 2 else "mono"
        return (
            f"#{self.index} {self.key} {self.tempo_bpm:.1f} BPM {self.feel} {self.drums} "
            f"{'-'.join(self.progression)} {'/'.join(self.instruments)} "
            f"{self.sample_rate} Hz {channels}"
        )


def _midi_hz(midi: float, detune_cents: float) -> float:
    return 440.0 * 2.0 ** ((midi - 69.0 + detune_cents / 100.0) / 12.0)


# --- instruments: each returns a mono note of `seconds` at `rate`, peak about 1 -----------------


def _pluck(hz: float, seconds: float, rate: int, rng: np.random.Generator) -> np.ndarray:
    """Karplus-Strong string: a noise burst circulating in a delay line with an averaging loss."""
    period = max(2, int(np.ceil(rate / hz)))
    # Run the string at an integer period, then resample so the pitch is exact.
    length = int(seconds * rate * (rate / hz) / period) + 2
    buffer = rng.uniform(-1.0, 1.0, period)
    blocks = []
    decay = 0.996 ** (440.0 / max(hz, 55.0))  # lower strings ring longer per period
    for _ in range(length // period + 1):
        blocks.append(buffer)
        shifted = np.empty_like(buffer)
        shifted[0], shifted[1:] = buffer[-1], buffer[:-1]
        buffer = decay * 0.5 * (buffer + shifted)
    string = np.concatenate(blocks)[:length]
    positions = np.arange(round(seconds * rate)) * (period * hz / rate)
    return np.interp(positions, np.arange(string.size), string)


def _bell(hz: float, seconds: float, rate: int, rng: np.random.Generator) -> np.ndarray:
    """FM bell: carrier at the pitch, modulator at 1.4x, decaying index (inharmonic partials)."""
    t = np.arange(round(seconds * rate)) / rate
    index = 3.0 * np.exp(-t * 3.0) + 0.3
    return np.sin(2 * np.pi * hz * t + index * np.sin(2 * np.pi * 1.4 * hz * t)) * np.exp(-t * 2.5)


def _pad(hz: float, seconds: float, rate: int, rng: np.random.Generator) -> np.ndarray:
    """Two detuned sawtooths (+-7 cents), slow attack and release, low-passed at 6 pitches."""
    t = np.arange(round(seconds * rate)) / rate
    tone = np.zeros_like(t)
    for cents in (-7.0, 7.0):
        f = hz * 2.0 ** (cents / 1200.0)
        tone += (
            2.0 * np.mod(f * t + rng.uniform(), 1.0) - 1.0
        )  # naive saw: the filter tames aliasing
    cutoff = min(6.0 * hz, 0.45 * rate)
    tone = sosfilt(butter(2, cutoff, fs=rate, output="sos"), tone)
    attack = np.minimum(1.0, t / 0.08)
    release = np.minimum(1.0, (seconds - t) / 0.1).clip(0.0, 1.0)
    return 0.5 * tone * attack * release


def _piano(hz: float, seconds: float, rate: int, rng: np.random.Generator) -> np.ndarray:
    """Sine partials 1..6, each decaying faster the higher it is, with a 3 ms attack."""
    t = np.arange(round(seconds * rate)) / rate
    tone = np.zeros_like(t)
    for harmonic in range(1, 7):
        if harmonic * hz >= 0.45 * rate:
            break
        tone += (
            (0.6**harmonic) * np.sin(2 * np.pi * harmonic * hz * t) * np.exp(-t * 1.5 * harmonic)
        )
    return tone * np.minimum(1.0, t / 0.003) / 0.9


_VOICES = {"pluck": _pluck, "bell": _bell, "pad": _pad, "piano": _piano}


def _kick(rate: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(round(0.3 * rate)) / rate
    sweep = 45.0 * t + (110.0 / 25.0) * (1.0 - np.exp(-25.0 * t))
    return np.sin(2 * np.pi * sweep) * np.exp(-t * 9.0)


def _snare(rate: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(round(0.2 * rate)) / rate
    noise = sosfilt(
        butter(2, 1500.0, "highpass", fs=rate, output="sos"), rng.normal(0, 0.7, t.size)
    )
    return (noise + 0.5 * np.sin(2 * np.pi * 190.0 * t)) * np.exp(-t * 22.0)


def _hat(rate: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(round(0.06 * rate)) / rate
    noise = sosfilt(
        butter(2, min(7000.0, 0.4 * rate), "highpass", fs=rate, output="sos"),
        rng.normal(0, 1.0, t.size),
    )
    return noise * np.exp(-t * 70.0)


# --- arrangement ---------------------------------------------------------------------------------


class _Track:
    """A mono buffer notes are added into, with a stereo pan position."""

    def __init__(self, frames: int, rate: int, pan: float) -> None:
        self.buffer = np.zeros(frames)
        self.rate = rate
        self.pan = pan  # -1 left .. 1 right

    def add(self, at_s: float, sound: np.ndarray, gain: float) -> None:
        start = int(round(at_s * self.rate))
        stop = min(self.buffer.size, start + sound.size)
        if 0 <= start < self.buffer.size:
            self.buffer[start:stop] += gain * sound[: stop - start]


def _chord_pitches(tonic: int, mode: str, numeral: str) -> tuple[int, list[int]]:
    """Root pitch class and chord-tone pitch classes of a numeral in a key."""
    root, quality = (_MAJOR_CHORDS if mode == "major" else _MINOR_CHORDS)[numeral]
    pitches = [(tonic + root + step) % 12 for step in _QUALITIES[quality]]
    return (tonic + root) % 12, pitches


def _in_register(pitch_class: int, low_midi: int) -> int:
    """The first MIDI note of ``pitch_class`` at or above ``low_midi``."""
    return low_midi + (pitch_class - low_midi) % 12


def make_clip(index: int, n_clips: int, seconds: float = 8.0, seed: int = DEFAULT_SEED) -> Clip:
    """Clip ``index`` of a corpus of ``n_clips``, following the module's rules."""
    rng = np.random.default_rng((seed, index))
    # One seeded permutation per balanced factor, so each factor's values occur equally often
    # and no factor is tied to another (or to the key, which follows the index).
    slices, rate_slot, channel_slot, feel_slot = (
        np.random.default_rng((seed, n_clips, factor)).permutation(n_clips) for factor in range(4)
    )
    low, high = TEMPO_RANGE
    tempo = round(low + (high - low) * (slices[index] + rng.uniform()) / n_clips, 1)
    key = KEY_NAMES[index % 24]
    tonic_name, mode = key.split(" ")
    tonic = PITCH_CLASS_NAMES.index(tonic_name)
    rate = SAMPLE_RATES[rate_slot[index] % len(SAMPLE_RATES)]
    stereo = channel_slot[index] % 2 == 0
    detune = rng.uniform(-MAX_DETUNE_CENTS, MAX_DETUNE_CENTS)
    swing = feel_slot[index] % 2 == 1
    off_beat = rng.uniform(*SWING_RANGE) if swing else 0.5
    syncopated = bool(rng.uniform() < 0.5)
    progressions = MAJOR_PROGRESSIONS if mode == "major" else MINOR_PROGRESSIONS
    progression = progressions[int(rng.integers(len(progressions)))]
    drums = "none" if rng.uniform() < 0.125 else str(rng.choice(list(DRUM_PATTERNS)))
    instruments = (
        str(rng.choice(["pad", "piano", "pluck"])),
        str(rng.choice(["pluck", "piano"])),
        str(rng.choice(INSTRUMENTS)),
    )
    fifth_bass = bool(rng.uniform() < 0.5)

    frames = round(seconds * rate)
    beat = 60.0 / tempo  # s
    beats_per_chord = 2 if tempo < SLOW_CHORD_BPM else 4
    n_beats = int(np.ceil(seconds / beat)) + 1
    scale = [(tonic + step) % 12 for step in (MAJOR_SCALE if mode == "major" else MINOR_SCALE)]

    def eighth_time(eighth: int) -> float:
        """Onset of the eighth-note slot, seconds, with the feel's off-beat position."""
        whole, half = divmod(eighth, 2)
        return (whole + (off_beat if half else 0.0)) * beat

    notes: dict[tuple[str, int, int], np.ndarray] = {}

    def voice(name: str, midi: int, length_s: float) -> np.ndarray:
        # A repeated note reuses its samples (as a sampler would): it keeps generation quick.
        length = round(length_s * rate)
        if (name, midi, length) not in notes:
            notes[name, midi, length] = _VOICES[name](
                _midi_hz(midi, detune), length / rate, rate, rng
            )
        return notes[name, midi, length]

    chords = _Track(frames, rate, pan=-0.4)
    bass = _Track(frames, rate, pan=0.0)
    melody = _Track(frames, rate, pan=0.35)
    kit = _Track(frames, rate, pan=0.15)

    chord_name, bass_name, lead_name = instruments
    chord_span = beats_per_chord * beat
    for chord_index in range(int(np.ceil(n_beats / beats_per_chord))):
        numeral = progression[chord_index % len(progression)]
        root, tones = _chord_pitches(tonic, mode, numeral)
        start = chord_index * chord_span
        if syncopated and chord_index > 0:
            start -= (1.0 - off_beat) * beat  # pushed: the chord arrives an eighth early
        for tone in tones:
            chords.add(start, voice(chord_name, _in_register(tone, 55), chord_span * 0.95), 0.22)
        bass.add(start, voice(bass_name, _in_register(root, 36), chord_span / 2), 0.8)
        third_beat = root if not fifth_bass else (root + 7) % 12
        bass.add(
            start + chord_span / 2,
            voice(bass_name, _in_register(third_beat, 36), chord_span / 2),
            0.7,
        )

    # Melody: a random walk on the scale in eighths, chord tones on the beats.
    degree = int(rng.integers(7))
    chord_of_beat = []
    for b in range(n_beats):
        numeral = progression[(b // beats_per_chord) % len(progression)]
        chord_of_beat.append(_chord_pitches(tonic, mode, numeral))
    phrase_eighths = 2 * beats_per_chord * len(progression)
    for eighth in range(2 * n_beats):
        if rng.uniform() < 0.15:
            continue
        beat_index = eighth // 2
        root, tones = chord_of_beat[beat_index]
        if (eighth + 1) % phrase_eighths == 0 or (eighth + 2) % phrase_eighths == 0:
            pitch = tonic  # the phrase ends on the tonic
        elif eighth % 2 == 0:
            pitch = tones[int(rng.integers(len(tones)))]
        else:
            degree = (degree + int(rng.choice([-2, -1, 1, 1, 2]))) % 7
            pitch = scale[degree]
            if mode == "minor" and (root - tonic) % 12 == 7 and pitch == (tonic + 10) % 12:
                pitch = (tonic + 11) % 12  # raised leading tone over the major V
        at = eighth_time(eighth)
        # Syncopated clips tie the bar's last eighth over the next downbeat.
        length = beat if syncopated and eighth % 8 == 7 else 0.5 * beat
        melody.add(at, voice(lead_name, _in_register(pitch, 67), max(length, 0.12) * 1.6), 0.45)

    if drums != "none":
        kick, snare, hat = _kick(rate, rng), _snare(rate, rng), _hat(rate, rng)
        kicks, snares, hats = DRUM_PATTERNS[drums]
        for bar in range(n_beats // 4 + 1):
            for slots, sound, gain in ((kicks, kick, 0.9), (snares, snare, 0.5), (hats, hat, 0.3)):
                for slot in slots:
                    accent = 1.0 if slot % 2 == 0 else 0.8
                    kit.add(eighth_time(8 * bar + slot), sound, gain * accent)

    levels = rng.uniform(0.6, 1.2, 4)
    tracks = (chords, bass, melody, kit)
    if stereo:
        mix = np.zeros((2, frames))
        for level, track in zip(levels, tracks, strict=True):
            angle = (track.pan + 1.0) * np.pi / 4.0  # constant-power pan
            mix[0] += level * np.cos(angle) * track.buffer
            mix[1] += level * np.sin(angle) * track.buffer
    else:
        mix = sum(level * track.buffer for level, track in zip(levels, tracks, strict=True))[
            np.newaxis, :
        ]
    mix *= rng.uniform(0.3, 0.9) / np.max(np.abs(mix))
    return Clip(
        index=index,
        audio=mix,
        sample_rate=rate,
        tempo_bpm=float(tempo),
        key=key,
        feel="swing" if swing else "straight",
        drums=drums,
        progression=progression,
        instruments=instruments,
    )


@lru_cache(maxsize=2)
def corpus(n_clips: int = 72, seconds: float = 8.0, seed: int = DEFAULT_SEED) -> tuple[Clip, ...]:
    """The whole corpus, cached: ``n_clips`` clips of ``seconds`` each (72 = 3 per key)."""
    return tuple(make_clip(i, n_clips, seconds, seed) for i in range(n_clips))
