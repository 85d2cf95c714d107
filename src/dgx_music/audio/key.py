"""Key of a mono signal: profile correlation on constant-Q chroma, with the triads heard in it.

The log-compressed constant-Q chroma (librosa) is averaged and correlated with the 24 rotations
of the Albrecht-Shanahan key profiles; to each key's correlation is added how strongly the
triads recognised in short windows speak for it. The confidence is calibrated on whether the
music opens on that key's tonic chord. See :func:`estimate_key`.

Key names use one fixed scheme, shared with :mod:`dgx_music.generation.synth`: the tonic from
:data:`dgx_music.audio.notes.PITCH_CLASS_NAMES` (sharps only: ``"C#"``, never ``"Db"``), a
space, then ``"major"`` or ``"minor"``, e.g. ``"F# minor"``.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import NamedTuple

import librosa
import numpy as np

from dgx_music.audio import numba_cache
from dgx_music.audio.calibration import Calibration
from dgx_music.audio.mono import ANALYSIS_SAMPLE_RATE, too_short_or_silent, warm_up_clip
from dgx_music.audio.notes import KEY_NAMES

#: Key profiles of Albrecht and Shanahan (2013, Music Perception 31(1)): the share of each pitch
#: class, tonic first, in a corpus of common-practice pieces. Against Krumhansl-Kessler's
#: listener ratings (used until 2026-12) they weigh the notes outside the scale near zero; on the
#: tuning half of the real-music corpus (docs/ANALYSIS.md) exact key went from 62 % to 75 %.
PROFILE_MAJOR = np.array([0.238, 0.006, 0.111, 0.006, 0.137, 0.094, 0.016, 0.214, 0.009, 0.080,
                          0.008, 0.081])  # fmt: skip
PROFILE_MINOR = np.array([0.220, 0.006, 0.104, 0.123, 0.019, 0.103, 0.012, 0.214, 0.062, 0.022,
                          0.061, 0.052])  # fmt: skip

#: Triads recognised in chord windows: the 12 major (root C first), then the 12 minor.
_TRIAD_STEPS = {"major": (0, 4, 7), "minor": (0, 3, 7)}
#: How strongly a chord speaks for a key, by (semitones of its root above the tonic, quality):
#: the tonic most, then the dominant (the major V in minor keys too: the raised leading tone
#: of harmonic minor), the subdominant, then the other diatonic chords. A chord outside the
#: key counts against it. Weights are in units of the tonic chord's (3).
_MAJOR_KEY_CHORDS = {(0, "major"): 3.0, (7, "major"): 2.0, (5, "major"): 1.5, (9, "minor"): 1.0,
                     (2, "minor"): 1.0, (4, "minor"): 0.5}  # fmt: skip
_MINOR_KEY_CHORDS = {(0, "minor"): 3.0, (7, "major"): 2.0, (5, "minor"): 1.5, (8, "major"): 1.0,
                     (3, "major"): 1.0, (10, "major"): 1.0, (7, "minor"): 0.5}  # fmt: skip
_FOREIGN_CHORD_WEIGHT = -1.0
_TONIC_CHORD_WEIGHT = 3.0


def _triad_templates() -> np.ndarray:
    """The 24 triads as centred, unit-norm 12-bin chroma vectors (majors from C, then minors)."""
    templates = np.zeros((24, 12))
    for quality_index, steps in enumerate(_TRIAD_STEPS.values()):
        for root in range(12):
            templates[12 * quality_index + root, [(root + step) % 12 for step in steps]] = 1.0
    templates -= templates.mean(axis=1, keepdims=True)
    templates /= np.linalg.norm(templates, axis=1, keepdims=True)
    return templates


def _chord_function_weights() -> np.ndarray:
    """Matrix (24 keys x 24 triads): how much each recognised triad speaks for each key."""
    weights = np.full((24, 24), _FOREIGN_CHORD_WEIGHT)
    qualities = list(_TRIAD_STEPS)
    for key_index in range(24):
        tonic, table = key_index % 12, (_MAJOR_KEY_CHORDS if key_index < 12 else _MINOR_KEY_CHORDS)
        for (interval, quality), weight in table.items():
            weights[key_index, 12 * qualities.index(quality) + (tonic + interval) % 12] = weight
    return weights / _TONIC_CHORD_WEIGHT


_TRIADS = _triad_templates()
_CHORD_FUNCTIONS = _chord_function_weights()

#: Below this spread of the mean chroma (standard deviation over mean), audio has no key
#: (white noise reaches 0.01, pink 0.03, brown 0.07; music with drums and inharmonic
#: instruments can sit as low as 0.06, so this gate only catches the flattest noise).
MIN_CHROMA_CONTRAST = 0.04
#: Below this mean fit (Pearson) of the short chroma windows to their best triad, audio has no
#: key (white, pink and brown noise stay under 0.54; music over a wide test corpus reaches 0.6
#: and more).
MIN_CHORD_FIT = 0.57
#: Chroma analysis: lowest pitch (C2, 65.4 Hz; kick drums and rumble below carry no key), octaves.
CHROMA_FMIN = 65.406
CHROMA_OCTAVES = 6
CHROMA_BINS_PER_OCTAVE = 36
#: Shortest input the CQT's lowest octave is computed on without padding, seconds.
CQT_MIN_SECONDS = 2.0
CHROMA_HOP = 512
#: Gain inside the log compression of the constant-Q magnitudes, log(1 + gain * |C| / max |C|).
#: Chosen on the tuning half of the real-music corpus with the overtone weight below.
CHROMA_LOG_GAIN = 1000.0
#: Chroma frames per chord window (8 x 512 samples at 22.05 kHz: 0.19 s, shorter than any
#: chord at 180 BPM) and the triad fit a window needs to vote for its chord.
CHORD_WINDOW_FRAMES = 8
MIN_CHORD_VOTE_FIT = 0.5
#: Weight of the chord-function score against the profile correlation (1: a clip made only of
#: tonic chords adds as much as a perfect profile correlation). Chosen with the profiles on the
#: tuning half of the real-music corpus, among 0.5-2, as the best that keeps the synthetic
#: corpus of tests/utils/music_corpus.py at 90 % or more (docs/ANALYSIS.md).
CHORD_FUNCTION_WEIGHT = 2.0
#: Share of each note's weight that its key template also puts a fifth above it. A played
#: note's third harmonic sounds a twelfth above it, and the log compression makes that partial
#: count in the chroma nearly as much as the note: C major's chroma holds more G, and more D
#: (G's own fifth), than its score does, which pulled the estimate a fifth up (E major read as
#: B major). Templates that carry the same fifths cancel that pull. Chosen on the tuning half of
#: the real-music corpus among 0.6-1.0 (docs/ANALYSIS.md).
OVERTONE_FIFTH_WEIGHT = 0.6
#: The opening whose chord the confidence reads: this long from the first sounding frame, s.
#: Chosen on the tuning half of the real-music corpus among 0.5-2 s (docs/ANALYSIS.md).
OPENING_SECONDS = 1.0
#: A frame sounds once its chroma energy reaches this share of the loudest frame's.
OPENING_ENERGY = 0.05
#: Chance that the key is right by how far its tonic triad leads every other triad in the
#: opening (:func:`opening_lead`). Fitted on the tuning half of the real-music corpus
#: (``python -m benchmarks.analysis_accuracy calibrate``; docs/ANALYSIS.md).
KEY_CALIBRATION = Calibration(intercept=2.218, slope=8.592)


class KeyEstimate(NamedTuple):
    """What :func:`estimate_key` found."""

    #: Key name such as ``"A minor"``; ``None`` for audio without a key.
    name: str | None
    #: Chance that ``name`` is right, 0..1 (:data:`KEY_CALIBRATION` of ``opening``).
    confidence: float
    #: How far the winning key's score leads the runner-up's.
    margin: float
    #: How far the key's tonic triad leads the other triads in the opening (:func:`opening_lead`).
    opening: float


NO_KEY = KeyEstimate(None, 0.0, 0.0, 0.0)


def warm_up() -> None:
    """Load (or compile) the librosa code of the key analysis, once per process, while no
    other process of this environment does (:func:`dgx_music.audio.numba_cache.first_use`).
    Every call of :func:`estimate_key` does this first."""
    numba_cache.first_use(__name__, lambda: estimate_key(warm_up_clip(), ANALYSIS_SAMPLE_RATE))


def estimate_key(mono: np.ndarray, sample_rate: int) -> KeyEstimate:
    """Key of a mono signal by profile correlation (Krumhansl-Schmuckler's method), with a
    calibrated confidence.

    The constant-Q spectrum (librosa, C2..B7, tuning estimated from the signal) is
    log-compressed, folded into a chroma per frame, averaged over time and correlated (Pearson)
    with the 24 rotations of the Albrecht-Shanahan major and minor profiles. To each key's
    correlation is added how strongly the triads recognised in 0.19 s windows speak for it
    (tonic, dominant, subdominant, other diatonic chords; foreign chords count against it);
    the best sum names the key.

    The confidence is how clearly the music opens on the key's tonic chord (:func:`opening_lead`),
    calibrated on real music. Tonal music nearly always starts on its tonic; where the estimate
    is wrong, it is mostly the key a fifth away, whose tonic chord the music does not open on.
    On the tuning half of the real-music corpus that told right from wrong far better than the
    winning key's lead over the runner-up (docs/ANALYSIS.md, "Confidence").

    Returns
    -------
    KeyEstimate
        ``name`` is ``None`` (and the figures 0) when the signal is silent, shorter than 0.5 s
        or has a nearly flat chroma or no triad-like windows, as noise has.
    """
    warm_up()
    if too_short_or_silent(mono, sample_rate):
        return NO_KEY
    shortfall = math.ceil(CQT_MIN_SECONDS * sample_rate) - mono.shape[-1]
    if shortfall > 0:
        # Silence appended adds only all-zero chroma frames: it scales the mean chroma, which
        # the correlation ignores, and spares the CQT's longest filters an input too short.
        mono = np.pad(mono, (0, shortfall))
    tuning = _estimate_tuning(mono, sample_rate)
    spectrum = np.abs(
        librosa.cqt(
            mono,
            sr=sample_rate,
            hop_length=CHROMA_HOP,
            fmin=CHROMA_FMIN,
            n_bins=CHROMA_OCTAVES * CHROMA_BINS_PER_OCTAVE,
            bins_per_octave=CHROMA_BINS_PER_OCTAVE,
            tuning=tuning,
        )
    )
    # Log compression, relative to the loudest bin so the result does not depend on level,
    # lets every sounding note count, not only the loudest few (the tonic and fifth, which
    # would pull the estimate towards the dominant key).
    spectrum = np.log1p(CHROMA_LOG_GAIN * spectrum / spectrum.max())
    # librosa's chroma_cqt without its per-frame normalisation (loud frames should weigh more
    # than quiet ones, as a listener hears them), as one matrix product.
    chroma = _cq_to_chroma() @ spectrum
    profile = chroma.mean(axis=1)
    mean = float(profile.mean())
    if mean <= 0 or float(profile.std()) < MIN_CHROMA_CONTRAST * mean:
        return NO_KEY
    votes, fit = _chord_votes(chroma)
    if fit < MIN_CHORD_FIT:
        return NO_KEY
    profile_scores = key_correlations(profile)
    # The profile alone confuses keys that share their notes (C major and A minor) or most of
    # them (C major and G major); which chords sound, and for how long, tells them apart: the
    # chords of C major and A minor are the same, but C major makes C and G major its
    # strongest chords, A minor makes A minor and E major (harmonic minor) its strongest.
    scores = profile_scores + CHORD_FUNCTION_WEIGHT * (_CHORD_FUNCTIONS @ votes)
    best = int(np.argmax(scores))
    margin = float(scores[best] - np.delete(scores, best).max())
    opening = opening_lead(chroma, best, sample_rate)
    return KeyEstimate(KEY_NAMES[best], KEY_CALIBRATION(opening), margin, opening)


def opening_lead(chroma: np.ndarray, key_index: int, sample_rate: int) -> float:
    """How far the tonic triad of key ``key_index`` (:data:`KEY_NAMES` order) leads the best
    other triad, by Pearson fit to the mean chroma of the first :data:`OPENING_SECONDS` of sound
    (from the first frame with :data:`OPENING_ENERGY` of the loudest frame's energy). Negative
    when another chord fits the opening better."""
    energy = chroma.sum(axis=0)
    start = int(np.argmax(energy >= OPENING_ENERGY * energy.max()))
    frames = max(1, round(OPENING_SECONDS * sample_rate / CHROMA_HOP))
    opening = chroma[:, start : start + frames].mean(axis=1)
    centred = opening - opening.mean()
    norm = float(np.linalg.norm(centred))
    if norm == 0:
        return -1.0
    fits = _TRIADS @ (centred / norm)
    # Triads and keys share one order: the 12 majors from C, then the 12 minors.
    return float(fits[key_index] - np.delete(fits, key_index).max())


def _chord_votes(chroma: np.ndarray) -> tuple[np.ndarray, float]:
    """Share of short windows won by each of the 24 triads, and the mean fit of the winners.

    The chroma (12 x frames) is averaged over windows of :data:`CHORD_WINDOW_FRAMES` frames;
    each window is matched (Pearson) against the triad templates. Windows whose best fit reaches
    :data:`MIN_CHORD_VOTE_FIT` vote for that triad; silent windows are left out.
    """
    n_windows = max(1, chroma.shape[1] // CHORD_WINDOW_FRAMES)
    usable = min(chroma.shape[1], n_windows * CHORD_WINDOW_FRAMES)
    windows = chroma[:, :usable].reshape(12, -1, min(usable, CHORD_WINDOW_FRAMES)).mean(axis=2)
    energy = windows.sum(axis=0)
    windows = windows[:, energy > 0.01 * energy.max()]
    centred = windows - windows.mean(axis=0, keepdims=True)
    norms = np.linalg.norm(centred, axis=0)
    centred = centred[:, norms > 0] / norms[norms > 0]
    if centred.shape[1] == 0:
        return np.zeros(24), 0.0
    fits = _TRIADS @ centred
    winners, best_fits = fits.argmax(axis=0), fits.max(axis=0)
    voting = best_fits >= MIN_CHORD_VOTE_FIT
    votes = np.bincount(winners[voting], minlength=24) / centred.shape[1]
    return votes.astype(np.float64), float(best_fits.mean())


def _estimate_tuning(mono: np.ndarray, sample_rate: int) -> float:
    """Deviation from A440 tuning, fractions of a CQT bin, as ``librosa.estimate_tuning``.

    Unlike librosa's, it answers 0 (A440) without a warning when the signal has no pitched
    peak at all (a constant, or noise below the tracker's threshold).
    """
    pitches, magnitudes = librosa.piptrack(y=mono, sr=sample_rate)
    pitched = pitches > 0
    if not pitched.any():
        return 0.0
    strong = pitches[pitched & (magnitudes >= np.median(magnitudes[pitched]))]
    if strong.size == 0:
        return 0.0
    return float(librosa.pitch_tuning(strong, bins_per_octave=CHROMA_BINS_PER_OCTAVE))


def _key_templates() -> np.ndarray:
    """The 24 key profiles (:data:`KEY_NAMES` order) as the chroma hears them, each note with
    its fifth (:data:`OVERTONE_FIFTH_WEIGHT`), centred and of unit norm."""
    heard = [
        profile + OVERTONE_FIFTH_WEIGHT * np.roll(profile, 7)
        for profile in (PROFILE_MAJOR, PROFILE_MINOR)
    ]
    templates = np.stack(
        [np.roll(heard[0], tonic) for tonic in range(12)]
        + [np.roll(heard[1], tonic) for tonic in range(12)]
    )
    templates = templates - templates.mean(axis=1, keepdims=True)
    normalised: np.ndarray = templates / np.linalg.norm(templates, axis=1, keepdims=True)
    return normalised


_KEY_TEMPLATES = _key_templates()


def key_correlations(chroma_profile: np.ndarray) -> np.ndarray:
    """Pearson correlation of a 12-bin chroma profile (C first) with each of :data:`KEY_NAMES`."""
    centred = chroma_profile - chroma_profile.mean()
    norm = np.linalg.norm(centred)
    if norm == 0:
        return np.zeros(len(KEY_NAMES))
    correlations: np.ndarray = _KEY_TEMPLATES @ (centred / norm)
    return correlations


@lru_cache(maxsize=1)
def _cq_to_chroma() -> np.ndarray:
    """librosa's map from the constant-Q bins to 12 chroma bins (as ``chroma_cqt`` builds it)."""
    mapping: np.ndarray = librosa.filters.cq_to_chroma(
        CHROMA_OCTAVES * CHROMA_BINS_PER_OCTAVE,
        bins_per_octave=CHROMA_BINS_PER_OCTAVE,
        n_chroma=12,
        fmin=CHROMA_FMIN,
    )
    return mapping
