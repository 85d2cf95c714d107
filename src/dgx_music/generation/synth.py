"""``synth``: a procedural arranger that stands in for MusicGen where tempo and key must be known.

It renders drums (kick, snare, hi-hats), a bass line, a chord progression and a simple melody,
panned across two channels, at 32 kHz. Tempo and key come from the prompt when it names them
(``"120 bpm"``, ``"in F# minor"``) and from the seed otherwise, and are reported in
:attr:`GenerationResult.reported`, so metadata analysis can be checked against known truth.

Every note is rendered as a whole numpy array (no per-sample Python loops), so a 16 s clip takes
a small fraction of a second on one CPU core.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import time
from dataclasses import dataclass

import numpy as np

from dgx_music.audio.notes import key_name, pitch_class
from dgx_music.generation.continuation import AudioPrompt, seconds_to_generate
from dgx_music.generation.request import (
    Backend,
    GenerationRequest,
    GenerationResult,
    ProgressCallback,
)

logger = logging.getLogger(__name__)

#: Output sample rate, Hz.
SAMPLE_RATE = 32_000
#: Tempo range a prompt may ask for, BPM; values outside are clamped to it.
MIN_TEMPO = 40.0
MAX_TEMPO = 240.0
#: Range the tempo is drawn from when the prompt names none, BPM (inclusive).
RANDOM_TEMPO_RANGE = (60, 180)
#: Beats per bar (the arranger writes in 4/4).
BEATS_PER_BAR = 4
#: Below this tempo the chords change every half bar instead of every bar, BPM.
HALF_BAR_CHORDS_BELOW = 150.0
#: Peak level of the rendered mix, linear full scale (the exporter normalises loudness later).
MIX_PEAK = 0.8
#: Length of the fade that ends the clip, seconds (avoids a click where a note is cut).
END_FADE = 0.01

_TEMPO_PATTERN = re.compile(r"(\d+(?:\.\d+)?)\s*-?\s*bpm\b", re.IGNORECASE)
_KEY_PATTERN = re.compile(
    r"\bin\s+([a-g])\s*(#|♯|b|♭|-?\s*sharp|-?\s*flat)?\s*-?\s*(major|minor|maj|min)\b",
    re.IGNORECASE,
)

#: Semitones above the tonic of each scale degree.
_SCALES = {
    "major": np.array([0, 2, 4, 5, 7, 9, 11]),
    "minor": np.array([0, 2, 3, 5, 7, 8, 10]),
}
#: Progressions, as 0-based scale degrees of the chord roots, repeated. The minor ones end on
#: the dominant, which returns to the tonic as the loop starts again (a cadence): without it a
#: minor loop's notes are its relative major's, and nothing says which is home.
_PROGRESSIONS = {
    "major": ((0, 4, 5, 3), (0, 5, 3, 4), (0, 3, 4, 0)),  # I-V-vi-IV, I-vi-IV-V, I-IV-V-I
    "minor": ((0, 5, 3, 4), (0, 3, 0, 4), (0, 6, 5, 4)),  # i-VI-iv-V, i-iv-i-V, i-VII-VI-V
}
#: Scale degree of the dominant chord, which a minor key plays major (harmonic minor: its third
#: is the raised seventh degree, the leading tone that pulls to the tonic), as pop and most
#: other styles in minor do.
_DOMINANT = 4
_LEADING_TONE = 11
#: Constant-power pan positions, -1 (left) .. +1 (right).
_PAN = {"kick": 0.0, "snare": 0.1, "hat": 0.45, "bass": 0.0, "chord": -0.3, "melody": 0.25}
#: Linear gains of one note of each instrument in the mix.
_GAIN = {"kick": 0.9, "snare": 0.55, "hat": 0.5, "bass": 0.3, "chord": 0.2, "melody": 0.16}
#: Relative amplitudes of the harmonics 1, 2, 3... of the pitched instruments.
_PARTIALS = {"bass": (1.0, 0.3, 0.1), "chord": (1.0, 0.15, 0.04), "melody": (1.0, 0.3, 0.1)}


@dataclass(frozen=True)
class Arrangement:
    """The musical choices behind one clip.

    Parameters
    ----------
    tempo_bpm
        Tempo, beats per minute.
    tonic
        Pitch class of the tonic, 0 (C) .. 11 (B).
    mode
        ``"major"`` or ``"minor"``.
    progression
        Scale degrees (0-based) of the chord roots, repeated; one chord per bar, or per half
        bar below :data:`HALF_BAR_CHORDS_BELOW`.
    """

    tempo_bpm: float
    tonic: int
    mode: str
    progression: tuple[int, ...]

    @property
    def key(self) -> str:
        """Key name in the shared naming scheme, e.g. ``"F# minor"``."""
        return key_name(self.tonic, self.mode)


def parse_tempo(prompt: str) -> float | None:
    """The tempo a prompt names (``"120 bpm"``, ``"90bpm"``, ``"72 BPM"``), clamped to 40..240.

    Returns
    -------
    float or None
        Tempo in beats per minute, or ``None`` when the prompt names none.
    """
    match = _TEMPO_PATTERN.search(prompt)
    if match is None:
        return None
    tempo = float(match.group(1))
    clamped = min(max(tempo, MIN_TEMPO), MAX_TEMPO)
    if clamped != tempo:
        logger.info(
            "prompt asks for %g BPM; using %g BPM (synth range %g..%g)",
            tempo,
            clamped,
            MIN_TEMPO,
            MAX_TEMPO,
            extra={"action": "synth_clamp_tempo"},
        )
    return clamped


def parse_key(prompt: str) -> tuple[int, str] | None:
    """The key a prompt names as ``in <note> major|minor``.

    Accepts sharps and flats (``#``, ``♯``, ``b``, ``♭``, ``sharp``, ``flat``), any case, and the
    abbreviations ``maj``/``min``: ``"in A minor"``, ``"in f# major"``, ``"in Bb minor"``.

    Returns
    -------
    tuple of (int, str) or None
        Tonic pitch class 0..11 and ``"major"``/``"minor"``, or ``None`` when the prompt names none.
    """
    match = _KEY_PATTERN.search(prompt)
    if match is None:
        return None
    note, accidental, mode = match.groups()
    name = note.upper()
    if accidental:
        accidental = accidental.replace("-", "").strip().lower()
        name += "#" if accidental in ("#", "♯", "sharp") else "b"
    return pitch_class(name), "major" if mode.lower().startswith("maj") else "minor"


def _rng_for(prompt: str, seed: int) -> np.random.Generator:
    # A stable hash: Python's hash() of a str changes from process to process.
    digest = hashlib.sha256(f"{seed}\x00{prompt}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:16], "big"))


def choose_arrangement(prompt: str, rng: np.random.Generator) -> Arrangement:
    """Tempo and key from the prompt, or from ``rng`` where it names none; the progression
    from ``rng``."""
    # Draw everything, whatever the prompt says, so the rest of the stream does not depend on it.
    random_tempo = float(rng.integers(RANDOM_TEMPO_RANGE[0], RANDOM_TEMPO_RANGE[1] + 1))
    random_tonic = int(rng.integers(12))
    random_mode = "major" if rng.random() < 0.5 else "minor"
    tempo = parse_tempo(prompt)
    key = parse_key(prompt)
    tonic, mode = key if key is not None else (random_tonic, random_mode)
    options = _PROGRESSIONS[mode]
    progression = options[int(rng.integers(len(options)))]
    return Arrangement(
        tempo_bpm=tempo if tempo is not None else random_tempo,
        tonic=tonic,
        mode=mode,
        progression=progression,
    )


def _chord(arrangement: Arrangement, degree: int) -> list[int]:
    """The triad on a scale degree, semitones above the tonic's pitch class (root first); in a
    minor key the dominant is major, its third raised to the leading tone."""
    scale = _SCALES[arrangement.mode]
    chord = [
        arrangement.tonic + int(scale[(degree + step) % 7]) + 12 * ((degree + step) // 7)
        for step in (0, 2, 4)
    ]
    if arrangement.mode == "minor" and degree == _DOMINANT:
        chord[1] = arrangement.tonic + _LEADING_TONE
    return chord


def _midi_hz(note: float) -> float:
    return float(440.0 * 2.0 ** ((note - 69.0) / 12.0))


def _envelope(n: int, attack: float, decay: float, release: float) -> np.ndarray:
    """Linear attack, exponential decay, linear release at the end; times in seconds."""
    t = np.arange(n) / SAMPLE_RATE
    env = np.exp(-t / decay) if decay > 0 else np.ones(n)
    n_attack = max(1, int(attack * SAMPLE_RATE))
    env[:n_attack] *= np.linspace(0.0, 1.0, n_attack, endpoint=False)[: min(n_attack, n)]
    n_release = min(n, max(1, int(release * SAMPLE_RATE)))
    env[n - n_release :] *= np.linspace(1.0, 0.0, n_release)
    return env


def _tone(freq: float, seconds: float, partials: tuple[float, ...], decay: float) -> np.ndarray:
    """A harmonic tone: ``partials[k]`` is the amplitude of harmonic k+1."""
    n = max(1, int(seconds * SAMPLE_RATE))
    phase = 2.0 * np.pi * freq * np.arange(n) / SAMPLE_RATE
    wave = np.zeros(n)
    for k, amplitude in enumerate(partials, start=1):
        if amplitude and freq * k < SAMPLE_RATE / 2:
            wave += amplitude * np.sin(k * phase)
    sound: np.ndarray = wave * _envelope(n, attack=0.005, decay=decay, release=0.03)
    return sound


def _kick(rng: np.random.Generator) -> np.ndarray:
    n = int(0.3 * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    freq = 48.0 + 110.0 * np.exp(-t / 0.03)  # the pitch drop that makes a kick
    phase = 2.0 * np.pi * np.cumsum(freq) / SAMPLE_RATE
    click = rng.standard_normal(n) * np.exp(-t / 0.003) * 0.3
    sound: np.ndarray = (np.sin(phase) + click) * _envelope(
        n, attack=0.001, decay=0.12, release=0.02
    )
    return sound


def _snare(rng: np.random.Generator) -> np.ndarray:
    n = int(0.2 * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    noise = np.diff(rng.standard_normal(n + 1))  # first difference tilts the noise bright
    body = np.sin(2.0 * np.pi * 185.0 * t) * np.exp(-t / 0.04)
    sound: np.ndarray = (0.5 * noise * np.exp(-t / 0.06) + 0.6 * body) * _envelope(
        n, 0.001, 0.0, 0.02
    )
    return sound


def _hat(rng: np.random.Generator) -> np.ndarray:
    n = int(0.05 * SAMPLE_RATE)
    noise = np.diff(rng.standard_normal(n + 2), n=2)  # second difference: mostly above 8 kHz
    sound: np.ndarray = 0.25 * noise * _envelope(n, attack=0.0005, decay=0.012, release=0.005)
    return sound


class _Mixer:
    """Adds mono sounds into a stereo buffer at a time and a constant-power pan position.

    The clip is the first ``n_samples``; the ``tail`` past it only gives the last notes room.
    """

    def __init__(self, n_samples: int, tail: int) -> None:
        self.n_samples = n_samples
        self.buffer = np.zeros((2, n_samples + tail))
        # Each tone rendered once per clip: the loops play the same notes bar after bar.
        self._tones: dict[tuple[float, float, str, float], np.ndarray] = {}

    def add_tone(
        self, note: float, start_s: float, seconds: float, part: str, decay: float, gain: float
    ) -> None:
        """A tone of ``part`` (its partials, its pan) at MIDI ``note``; one that starts after
        the clip's end is never heard, so it is not rendered."""
        if round(start_s * SAMPLE_RATE) >= self.n_samples:
            return
        key = (note, seconds, part, decay)
        sound = self._tones.get(key)
        if sound is None:
            sound = self._tones[key] = _tone(_midi_hz(note), seconds, _PARTIALS[part], decay)
        self.add(sound, start_s, gain=gain, pan=_PAN[part])

    def add(self, sound: np.ndarray, start_s: float, gain: float, pan: float) -> None:
        start = round(start_s * SAMPLE_RATE)
        end = min(start + sound.shape[0], self.buffer.shape[1])
        if start >= min(end, self.n_samples):
            return
        angle = (pan + 1.0) * np.pi / 4.0
        segment = sound[: end - start] * gain
        self.buffer[0, start:end] += math.cos(angle) * segment
        self.buffer[1, start:end] += math.sin(angle) * segment


class SynthBackend(Backend):
    """Procedural drums, bass, chords and melody in a key and at a tempo the prompt may name.

    The same (prompt, seed) always gives the same audio. ``reported`` holds ``tempo_bpm`` (float,
    BPM) and ``key`` (e.g. ``"A minor"``, sharps only, as in
    :data:`dgx_music.audio.notes.PITCH_CLASS_NAMES`).
    """

    name = "synth"
    sample_rate = SAMPLE_RATE

    @property
    def device(self) -> str:
        """Always ``"cpu"``: the arranger is plain numpy."""
        return "cpu"

    def generate(
        self,
        request: GenerationRequest,
        *,
        seed: int,
        progress: ProgressCallback | None = None,
        continuation: AudioPrompt | None = None,
    ) -> GenerationResult:
        """Render ``request.duration`` seconds (exactly ``round(duration * 32000)`` samples).

        Parameters
        ----------
        request
            A validated request; only ``prompt`` and ``duration`` are used.
        seed
            Random seed; with the prompt it fixes every choice.
        progress
            Called with (bars done, bars total) after each bar.
        continuation
            A track to follow. The arranger does not listen to it: it renders its own music,
            ``CROSSFADE_SECONDS`` longer, for the engine to join after the track.

        Returns
        -------
        GenerationResult
            float32 audio shaped (2, samples) at 32 kHz, with the tempo and key in ``reported``.
        """
        started = time.perf_counter()
        rng = _rng_for(request.prompt, seed)
        arrangement = choose_arrangement(request.prompt, rng)
        seconds = seconds_to_generate(request.duration, continuation)
        audio = self._render(arrangement, seconds, rng, progress)
        elapsed = time.perf_counter() - started
        logger.debug(
            "synth rendered %.2f s at %.1f BPM in %s in %.3f s",
            request.duration,
            arrangement.tempo_bpm,
            arrangement.key,
            elapsed,
            extra={"action": "synth_generate"},
        )
        return GenerationResult(
            audio=audio,
            sample_rate=SAMPLE_RATE,
            model=self.name,
            device=self.device,
            seed=seed,
            generation_seconds=elapsed,
            reported={"tempo_bpm": float(arrangement.tempo_bpm), "key": arrangement.key},
        )

    def _render(
        self,
        arrangement: Arrangement,
        duration: float,
        rng: np.random.Generator,
        progress: ProgressCallback | None,
    ) -> np.ndarray:
        n_samples = round(duration * SAMPLE_RATE)
        beat_s = 60.0 / arrangement.tempo_bpm
        bar_s = beat_s * BEATS_PER_BAR
        n_bars = max(1, math.ceil(duration / bar_s))
        # Slow songs change chord every half bar, so a short clip still states the progression.
        beats_per_chord = BEATS_PER_BAR
        if arrangement.tempo_bpm < HALF_BAR_CHORDS_BELOW:
            beats_per_chord //= 2
        mixer = _Mixer(n_samples, tail=SAMPLE_RATE)  # room for the last notes' release
        scale = _SCALES[arrangement.mode]
        tonic_triad = {(arrangement.tonic + int(scale[step])) % 12 for step in (0, 2, 4)}
        # One drum sound of each kind per clip, as a drum machine would play it.
        kick, snare, hat = _kick(rng), _snare(rng), _hat(rng)

        for bar in range(n_bars):
            for beat in range(BEATS_PER_BAR):
                at = (bar * BEATS_PER_BAR + beat) * beat_s
                slot, beat_in_chord = divmod(bar * BEATS_PER_BAR + beat, beats_per_chord)
                degree = arrangement.progression[slot % len(arrangement.progression)]
                chord = _chord(arrangement, degree)
                if beat_in_chord == 0:
                    # A sustained triad, plus its root an octave up, for as long as the chord lasts.
                    for note in [*chord, chord[0] + 12]:
                        chord_s = beats_per_chord * beat_s
                        mixer.add_tone(48 + note, at, chord_s, "chord", 2.0 * bar_s, _GAIN["chord"])
                self._drums(mixer, at, beat, beat_s, kick, snare, hat)
                # Bass on every beat, on the chord root, an octave up on beat 3.
                bass_note = 36 + chord[0] % 12 + (12 if beat == 2 else 0)
                mixer.add_tone(bass_note, at, beat_s * 0.9, "bass", 0.4, _GAIN["bass"])
                # Melody, on the downbeat and most other beats: a chord tone on the strong beats
                # (1 and 3), preferring the tonic triad's, and any note of the scale on the weak
                # ones, so the key stays audible whatever chord is playing.
                if beat == 0 or rng.random() < 0.75:
                    if beat % 2 == 0:
                        tones = [tone for tone in chord if tone % 12 in tonic_triad] or chord
                        tone = tones[int(rng.integers(len(tones)))]
                    else:
                        tone = arrangement.tonic + int(scale[int(rng.integers(7))])
                    gain = _GAIN["melody"] * (0.8 + 0.4 * rng.random())
                    mixer.add_tone(72 + tone % 12, at, beat_s * 0.95, "melody", 0.5, gain)
            if progress is not None:
                progress(bar + 1, n_bars)

        audio = mixer.buffer[:, :n_samples]
        n_fade = min(n_samples, int(END_FADE * SAMPLE_RATE))
        if n_fade:
            audio[:, n_samples - n_fade :] *= np.linspace(1.0, 0.0, n_fade)
        peak = float(np.max(np.abs(audio))) if n_samples else 0.0
        if peak > 0:
            audio *= MIX_PEAK / peak
        return audio.astype(np.float32)

    @staticmethod
    def _drums(
        mixer: _Mixer,
        at: float,
        beat: int,
        beat_s: float,
        kick: np.ndarray,
        snare: np.ndarray,
        hat: np.ndarray,
    ) -> None:
        """Kick on beats 1 and 3, snare on 2 and 4, hi-hat on every eighth note."""
        if beat % 2 == 0:
            mixer.add(kick, at, gain=_GAIN["kick"], pan=_PAN["kick"])
        else:
            mixer.add(snare, at, gain=_GAIN["snare"], pan=_PAN["snare"])
        for half in (0, 1):  # the off-beat hat a little softer
            gain = _GAIN["hat"] * (1.0 - 0.4 * half)
            mixer.add(hat, at + half * beat_s / 2, gain=gain, pan=_PAN["hat"])
