"""Continuing a piece of audio: the given track, checked and laid out, and the join after it.

A continuation's output is the given track as it was given (resampled to 32 kHz stereo, the
layout of every file written here), then ``duration`` seconds of new music. The model hears only
the last :data:`CONDITIONING_SECONDS` of the track, encoded to tokens as its prompt; the new part
is the decode of the tokens that follow. The two meet in a linear crossfade of
:data:`CROSSFADE_SECONDS`: the new part starts that much before the given track ends, so the
output is exactly ``len(track) + duration`` long and no sample of EnCodec's re-synthesis of the
prompt is in it. The gains sum to one, so a step between two samples inside the fade is at most
the larger of the two signals' own steps plus their difference spread over the fade: no click.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dgx_music.config import OUTPUT_SAMPLE_RATE
from dgx_music.errors import InvalidAudioError, ValidationError

#: Longest track that may be continued, seconds.
MAX_CONTINUE_SECONDS = 300.0
#: Seconds at the end of the given track that condition the model (MusicGen's audio prompt).
CONDITIONING_SECONDS = 25.0
#: Length of the join, seconds: long enough that the fade itself adds at most 1/640 of the two
#: signals' difference to any step, short enough that starting the new part this much early
#: stays under what a listener hears as a flam (the limit is 50 ms).
CROSSFADE_SECONDS = 0.02
#: Peak below which a track counts as silence: -80 dBFS, under the noise of any recording.
SILENCE_PEAK = 10 ** (-80 / 20)


@dataclass(frozen=True)
class AudioPrompt:
    """A checked track to continue: float32 (2, samples) at 32 kHz, and where it came from.

    Build it with :func:`load_audio_prompt` (a file) or :func:`audio_prompt` (samples).
    """

    audio: np.ndarray
    #: What it is, for the metadata: ``{"file": ...}`` or ``{"generation_id": ...}``, and more.
    source: dict[str, object]

    @property
    def seconds(self) -> float:
        return self.audio.shape[-1] / OUTPUT_SAMPLE_RATE

    def conditioning(self, channels: int) -> np.ndarray:
        """The last :data:`CONDITIONING_SECONDS` as float32 (channels, samples) at 32 kHz: the
        left and right channels for a stereo model, their mean for a mono one."""
        tail = self.audio[:, -round(CONDITIONING_SECONDS * OUTPUT_SAMPLE_RATE) :]
        if channels == 1:
            tail = tail.mean(axis=0, keepdims=True)
        return np.ascontiguousarray(tail, dtype=np.float32)

    def describe(self) -> dict[str, object]:
        """What the metadata records: the source, its length and how much conditioned."""
        return {
            **self.source,
            "seconds": round(self.seconds, 6),
            "conditioning_seconds": round(min(self.seconds, CONDITIONING_SECONDS), 6),
            "crossfade_seconds": CROSSFADE_SECONDS,
        }


def seconds_to_generate(duration: float, continuation: AudioPrompt | None) -> float:
    """What a backend generates for ``duration`` seconds of new music: for a continuation,
    :data:`CROSSFADE_SECONDS` more, the part laid over the given track's end."""
    return duration + (CROSSFADE_SECONDS if continuation is not None else 0.0)


def fade_samples(sample_rate: int = OUTPUT_SAMPLE_RATE) -> int:
    """Samples of the join at ``sample_rate``."""
    return round(CROSSFADE_SECONDS * sample_rate)


def audio_prompt(
    samples: np.ndarray, sample_rate: int, source: dict[str, object], *, field: str = "continue"
) -> AudioPrompt:
    """Check ``samples`` as a track to continue and lay it out as 32 kHz stereo.

    Parameters
    ----------
    samples
        (samples,) or (channels, samples), full scale 1.0, any rate.
    sample_rate
        Hz.
    source
        Where it came from, recorded in the metadata.
    field
        The request field named in errors (``continue`` for the CLI's option, ``continue_from``
        for the API's).

    Raises
    ------
    ValidationError
        The audio is empty, holds NaN or infinite values, is silent or longer than
        :data:`MAX_CONTINUE_SECONDS`.
    """
    from dgx_music.audio.export import to_output_layout

    array = np.asarray(samples)
    if array.size == 0:
        raise ValidationError(field, "the audio to continue is empty", limit="at least 1 sample")
    seconds = array.shape[-1] / sample_rate
    if seconds > MAX_CONTINUE_SECONDS:
        raise ValidationError(
            field,
            f"the audio to continue is {seconds:.1f} s long; the limit is "
            f"{MAX_CONTINUE_SECONDS:g} s",
            limit=f"at most {MAX_CONTINUE_SECONDS:g} seconds",
        )
    try:
        laid_out = to_output_layout(array, sample_rate)
    except InvalidAudioError as exc:
        raise ValidationError(field, f"the audio to continue is unusable: {exc}") from exc
    if float(np.max(np.abs(laid_out))) < SILENCE_PEAK:
        raise ValidationError(
            field,
            "the audio to continue is silent (its peak is below -80 dBFS); there is nothing "
            "to continue",
            limit="a peak of at least -80 dBFS",
        )
    return AudioPrompt(audio=laid_out.astype(np.float32), source=dict(source))


def load_audio_prompt(path: Path, *, field: str = "continue") -> AudioPrompt:
    """Read a sound file (any format libsndfile reads: WAV, FLAC, OGG...) to continue.

    Raises
    ------
    ValidationError
        The file is missing or unreadable, or its audio fails :func:`audio_prompt`.
    """
    import soundfile

    path = Path(path)
    try:
        info = soundfile.info(str(path))
        if info.duration > MAX_CONTINUE_SECONDS:
            # Refuse before reading minutes of samples into memory.
            raise ValidationError(
                field,
                f"{path} is {info.duration:.1f} s long; the limit is {MAX_CONTINUE_SECONDS:g} s",
                limit=f"at most {MAX_CONTINUE_SECONDS:g} seconds",
            )
        samples, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except ValidationError:
        raise
    except (OSError, RuntimeError, soundfile.LibsndfileError) as exc:
        raise ValidationError(field, f"cannot read {path} as audio: {exc}") from exc
    return audio_prompt(samples.T, int(rate), {"file": str(path.resolve())}, field=field)


def join(track: np.ndarray, new: np.ndarray, sample_rate: int = OUTPUT_SAMPLE_RATE) -> np.ndarray:
    """``track`` followed by ``new``, the first :func:`fade_samples` of ``new`` laid over the
    last of ``track`` in a linear crossfade.

    Parameters
    ----------
    track
        (channels, n) float audio.
    new
        (channels, m) float audio, m >= the fade; its first fade samples are the join.

    Returns
    -------
    numpy.ndarray
        float32 (channels, n + m - fade).
    """
    fade = min(fade_samples(sample_rate), track.shape[-1], new.shape[-1])
    out = np.concatenate([track, new[:, fade:]], axis=1).astype(np.float32)
    if fade:
        rise = (np.arange(fade) + 0.5) / fade
        at = track.shape[-1] - fade
        out[:, at : at + fade] = track[:, at:] * (1 - rise) + new[:, :fade] * rise
    return out
