"""EnCodec on both sides of MusicGen: audio to codes (a continuation's prompt) and codes to audio.

MusicGen's EnCodec is a convolutional decoder with an LSTM in it, not causal: a sample depends
on codes on both sides of it, a little way off. :func:`decode` therefore decodes a long run of
codes in chunks, each with :data:`DECODE_CONTEXT_FRAMES` extra frames of context on either side
that are decoded and thrown away, so the memory a decode needs is that of one chunk whatever the
track's length, and the chunks join without a seam (docs/LONGFORM.md measures both).

Stereo checkpoints interleave the codebooks of the left and right channel (left, right, left,
...); each channel is its own EnCodec stream, encoded and decoded alone.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from transformers import MusicgenForConditionalGeneration

#: Frames one decode call turns into audio, besides its context: 10 s at 50 Hz.
DECODE_CHUNK_FRAMES = 500
#: Frames decoded on each side of a chunk and thrown away, so that its edges hear what a one-pass
#: decode would: 1 s at 50 Hz (docs/LONGFORM.md: the small twin's codec then matches a one-pass
#: decode at far above 40 dB SNR, chunk boundaries included).
DECODE_CONTEXT_FRAMES = 50


def samples_per_frame(model: MusicgenForConditionalGeneration) -> int:
    """Audio samples per codec frame: the product of EnCodec's upsampling ratios (640 at 32 kHz
    and 50 Hz)."""
    return math.prod(int(ratio) for ratio in model.config.audio_encoder.upsampling_ratios)


def _channels(model: MusicgenForConditionalGeneration) -> int:
    return int(model.config.decoder.audio_channels)


def _decode_once(model: MusicgenForConditionalGeneration, codes: torch.Tensor) -> torch.Tensor:
    """EnCodec's audio for (codebooks, frames) codes, one call per channel: (channels, samples)."""
    frames = codes[None, None]  # (chunks, batch, codebooks, frames)
    # Stereo: left codebooks at even rows, right at odd.
    parts = [frames] if _channels(model) == 1 else [frames[:, :, ::2], frames[:, :, 1::2]]
    audio = torch.cat(
        [model.audio_encoder.decode(part, audio_scales=[None]).audio_values for part in parts],
        dim=1,
    )
    return audio[0]


def decode(
    model: MusicgenForConditionalGeneration,
    codes: torch.Tensor,
    *,
    start: int = 0,
    chunk_frames: int = DECODE_CHUNK_FRAMES,
    context_frames: int = DECODE_CONTEXT_FRAMES,
) -> np.ndarray:
    """The audio of ``codes[:, start:]``, decoded in overlapping chunks.

    Parameters
    ----------
    model
        A loaded MusicGen; its EnCodec decodes.
    codes
        (codebooks, frames) integer codes on the model's device.
    start
        First frame whose audio is wanted; frames before it serve as left context only (a
        continuation's prompt, whose re-synthesis is never used).
    chunk_frames
        Frames of output per decode call.
    context_frames
        Frames decoded on each side of a chunk and dropped.

    Returns
    -------
    numpy.ndarray
        float32 (channels, (frames - start) * samples per frame).
    """
    if chunk_frames <= 0 or context_frames < 0:
        raise ValueError("chunk_frames must be positive and context_frames not negative")
    frames = int(codes.shape[-1])
    hop = samples_per_frame(model)
    # A torch buffer, not numpy: torch's profiler then sees the whole decode's memory.
    out = torch.zeros((_channels(model), (frames - start) * hop), dtype=torch.float32)
    for first in range(start, frames, chunk_frames):
        last = min(first + chunk_frames, frames)
        low, high = max(0, first - context_frames), min(frames, last + context_frames)
        audio = _decode_once(model, codes[:, low:high])
        piece = audio[:, (first - low) * hop : (last - low) * hop]
        at = (first - start) * hop
        out[:, at : at + piece.shape[-1]] = piece.to(device="cpu", dtype=torch.float32)
    return out.numpy()


def encode(model: MusicgenForConditionalGeneration, audio: np.ndarray) -> torch.Tensor:
    """The codes of ``audio``: (codebooks, frames) on the model's device.

    Parameters
    ----------
    audio
        float32 (channels, samples) at the model's sample rate, with as many channels as the
        model makes (1, or 2 for the stereo checkpoints).
    """
    if audio.shape[0] != _channels(model):
        raise ValueError(f"{_channels(model)} channel(s) expected, got {audio.shape[0]}")
    encoder = model.audio_encoder
    values = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))
    values = values.to(device=encoder.device, dtype=encoder.dtype)
    streams = [
        encoder.encode(values[channel][None, None]).audio_codes[0, 0]  # (codebooks, frames)
        for channel in range(values.shape[0])
    ]
    if len(streams) == 1:
        return streams[0]
    # Interleave: left codebook 0, right codebook 0, left codebook 1, ...
    return torch.stack(streams, dim=1).reshape(-1, streams[0].shape[-1])
