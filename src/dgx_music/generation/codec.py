"""EnCodec on both sides of MusicGen: audio to codes (a continuation's prompt) and codes to audio.

MusicGen's EnCodec decoder has two parts. At the frame rate (50 Hz), a convolution and a
two-layer LSTM: the LSTM is causal but remembers everything before it. Then an upsampling stack
of convolutions to 32 kHz, which holds nearly all the activations and compute, and sees only a
frame or two either side. :func:`decode` therefore streams:

- the frame-rate part runs once, left to right, over all the codes, a chunk at a time, carrying
  the LSTM's state from chunk to chunk (the same arithmetic as one pass over the whole track);
- the upsampling stack decodes chunks of :data:`DECODE_CHUNK_FRAMES` with
  :data:`DECODE_CONTEXT_FRAMES` frames of context either side, decoded and thrown away.

The memory a decode needs is that of one chunk whatever the track's length, and the chunks join
without a seam (docs/LONGFORM.md measures both).

Stereo checkpoints interleave the codebooks of the left and right channel (left, right, left,
...); each channel is its own EnCodec stream, encoded and decoded alone.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from transformers import EncodecModel, MusicgenForConditionalGeneration

#: Frames one call of the upsampling stack turns into audio, besides its context: 3 s at 50 Hz.
#: Small chunks keep the 32 kHz activations in cache: on one CPU core, 100- to 200-frame chunks
#: decode a third faster than one pass over the whole track (docs/LONGFORM.md).
DECODE_CHUNK_FRAMES = 150
#: Frames decoded on each side of a chunk and thrown away, so that its edges hear what a one-pass
#: decode would. The stack after the LSTM sees about one frame either side, and the convolution
#: before it three: four leaves room (docs/LONGFORM.md: the small twin's codec then matches a
#: one-pass decode to float32 rounding, chunk boundaries included).
DECODE_CONTEXT_FRAMES = 4


def samples_per_frame(model: MusicgenForConditionalGeneration) -> int:
    """Audio samples per codec frame: the product of EnCodec's upsampling ratios (640 at 32 kHz
    and 50 Hz)."""
    return math.prod(int(ratio) for ratio in model.config.audio_encoder.upsampling_ratios)


def _channels(model: MusicgenForConditionalGeneration) -> int:
    return int(model.config.decoder.audio_channels)


def _streams(model: MusicgenForConditionalGeneration, codes: torch.Tensor) -> list[torch.Tensor]:
    """Each channel's (codebooks, frames) codes: stereo's left at even rows, right at odd."""
    return [codes] if _channels(model) == 1 else [codes[::2], codes[1::2]]


def _decode_once(model: MusicgenForConditionalGeneration, codes: torch.Tensor) -> torch.Tensor:
    """EnCodec's own decode of (codebooks, frames) codes in one call per channel, as transformers
    writes it: (channels, samples). The reference the streamed decode is tested against."""
    audio = [
        model.audio_encoder.decode(stream[None, None], audio_scales=[None]).audio_values[0]
        for stream in _streams(model, codes)
    ]
    return torch.cat(audio, dim=0)


class _FrameFeatures:
    """The LSTM's output for one channel's codes, computed left to right as frames are asked for.

    Holds the frames from the lowest still wanted to the highest computed, and the LSTM's state
    after the last: what a chunk needs, not the track.
    """

    def __init__(self, encoder: EncodecModel, codes: torch.Tensor, context: int) -> None:
        if not isinstance(getattr(encoder.decoder.layers[1], "lstm", None), torch.nn.LSTM):
            raise TypeError(
                "the streamed decode needs MusicGen's EnCodec: a convolution, then an LSTM"
            )
        self.encoder = encoder
        self.codes = codes
        self.frames = int(codes.shape[-1])
        # The frame-rate convolution in front of the LSTM sees three frames either side.
        self.context = max(context, 3)
        self.first = 0  # frame of held[..., 0]
        self.held: torch.Tensor | None = None
        self.state: tuple[torch.Tensor, torch.Tensor] | None = None

    def _compute(self, end: int, to: int) -> torch.Tensor:
        """LSTM output for frames [end, to), continuing from the state after frame end - 1."""
        convolution, lstm = self.encoder.decoder.layers[0], self.encoder.decoder.layers[1]
        low, high = max(0, end - self.context), min(self.frames, to + self.context)
        embeddings = self.encoder.quantizer.decode(self.codes[:, None, low:high])
        steps = convolution(embeddings)[..., end - low : to - low].permute(2, 0, 1)
        # transformers' EncodecLSTM.forward, with the state kept: the LSTM plus its skip path.
        out, self.state = lstm.lstm(steps, self.state)
        return (out + steps).permute(1, 2, 0)

    def window(self, low: int, high: int) -> torch.Tensor:
        """Features of frames [low, high): (1, dimension, high - low). ``low`` and ``high`` may
        only grow from call to call."""
        end = self.first + (0 if self.held is None else self.held.shape[-1])
        if high > end:
            new = self._compute(end, high)
            self.held = new if self.held is None else torch.cat([self.held, new], dim=-1)
        assert self.held is not None
        if low > self.first:
            self.held = self.held[..., low - self.first :]
            self.first = low
        return self.held[..., low - self.first : high - self.first]


def decode(
    model: MusicgenForConditionalGeneration,
    codes: torch.Tensor,
    *,
    start: int = 0,
    chunk_frames: int = DECODE_CHUNK_FRAMES,
    context_frames: int = DECODE_CONTEXT_FRAMES,
) -> np.ndarray:
    """The audio of ``codes[:, start:]``, streamed chunk by chunk.

    Parameters
    ----------
    model
        A loaded MusicGen; its EnCodec decodes.
    codes
        (codebooks, frames) integer codes on the model's device.
    start
        First frame whose audio is wanted; the frames before it only bring the LSTM to its state
        (a continuation's prompt, whose re-synthesis is never used).
    chunk_frames
        Frames of output per call of the upsampling stack.
    context_frames
        Frames the upsampling stack decodes on each side of a chunk and drops.

    Returns
    -------
    numpy.ndarray
        float32 (channels, (frames - start) * samples per frame).
    """
    if chunk_frames <= 0 or context_frames < 0:
        raise ValueError("chunk_frames must be positive and context_frames not negative")
    frames = int(codes.shape[-1])
    hop = samples_per_frame(model)
    encoder = model.audio_encoder
    upsampling = encoder.decoder.layers[2:]
    # A torch buffer, not numpy: torch's profiler then sees the whole decode's memory.
    out = torch.zeros((_channels(model), (frames - start) * hop), dtype=torch.float32)
    for channel, stream in enumerate(_streams(model, codes)):
        features = _FrameFeatures(encoder, stream, context_frames)
        for first in range(start, frames, chunk_frames):
            last = min(first + chunk_frames, frames)
            low, high = max(0, first - context_frames), min(frames, last + context_frames)
            hidden = features.window(low, high)
            for layer in upsampling:
                hidden = layer(hidden)
            piece = hidden[0, 0, (first - low) * hop : (last - low) * hop]
            at = (first - start) * hop
            out[channel, at : at + piece.shape[-1]] = piece.to(device="cpu", dtype=torch.float32)
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
