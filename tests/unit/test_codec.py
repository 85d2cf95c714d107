"""EnCodec in chunks: the real-size codec (musicgen-small's twin) streams a long track's decode,
the LSTM's state carried and the upsampling in overlapping chunks, with no seam; and encodes audio
to the codes a continuation is prompted with.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from transformers import MusicgenForConditionalGeneration

from dgx_music.generation import codec
from dgx_music.generation.twins import TWIN_SEED, materialise, twin_config
from tests.utils.twins import small_twin

torch.set_num_threads(1)

#: One worker runs this module and test_twins.py, so musicgen-small's twin is built once.
pytestmark = pytest.mark.xdist_group("twins")

#: Samples per codec frame at 32 kHz and 50 Hz.
HOP = 640
#: The issue's bar for "no seam": chunked against one-pass, dB, overall and in every window.
MIN_SNR_DB = 40.0
#: Samples in 100 ms at 32 kHz: the window that bar is checked in.
WINDOW = 3200


def snr_db(reference: np.ndarray, test: np.ndarray) -> float:
    error = np.sum((reference - test) ** 2)
    return float("inf") if error == 0 else float(10 * np.log10(np.sum(reference**2) / error))


@pytest.fixture(scope="module")
def small_codec():
    """musicgen-small's twin: the real 32 kHz EnCodec (57 M parameters), seeded weights."""
    return small_twin().model


def test_60_s_decoded_in_chunks_matches_one_pass_everywhere(small_codec):
    codes = torch.randint(0, 2048, (4, 60 * 50), generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        whole = codec._decode_once(small_codec, codes).numpy()
        chunked = codec.decode(small_codec, codes)
    assert chunked.shape == whole.shape == (1, 60 * 32_000)
    assert snr_db(whole, chunked) >= MIN_SNR_DB
    assert worst_window_snr(whole, chunked) >= MIN_SNR_DB


def worst_window_snr(whole: np.ndarray, chunked: np.ndarray) -> float:
    """The lowest SNR over every 100 ms window of the track, on two grids half a window apart,
    so that any seam lies well inside some window. Prints it with the window's start."""
    worst = (math.inf, 0)
    for offset in (0, WINDOW // 2):
        usable = (whole.shape[-1] - offset) // WINDOW * WINDOW
        ref = whole[:, offset : offset + usable].reshape(whole.shape[0], -1, WINDOW)
        got = chunked[:, offset : offset + usable].reshape(whole.shape[0], -1, WINDOW)
        error = np.sum((ref - got) ** 2, axis=(0, 2))
        power = np.sum(ref**2, axis=(0, 2))
        with np.errstate(divide="ignore"):
            snrs = 10 * np.log10(power / error)
        at = int(np.argmin(snrs))
        worst = min(worst, (float(snrs[at]), offset + at * WINDOW))
    print(f"lowest SNR {worst[0]:.1f} dB, in the 100 ms from sample {worst[1]}")
    return worst[0]


@pytest.fixture(scope="module")
def four_seconds(small_codec) -> tuple[torch.Tensor, np.ndarray]:
    """4 s of codes and their one-pass decode, for the checks that must fail."""
    codes = torch.randint(0, 2048, (4, 200), generator=torch.Generator().manual_seed(4))
    with torch.inference_mode():
        return codes, codec._decode_once(small_codec, codes).numpy()


def test_the_check_fails_without_context(small_codec, four_seconds):
    # Chunks upsampled with no context each see their edges padded by reflection, not their
    # neighbours: the boundaries show. This is what the overlap is for, and proof the comparison
    # above can fail.
    codes, whole = four_seconds
    with torch.inference_mode():
        bare = codec.decode(small_codec, codes, chunk_frames=100, context_frames=0)
        kept = codec.decode(small_codec, codes, chunk_frames=100)
    assert worst_window_snr(whole, bare) < MIN_SNR_DB
    assert worst_window_snr(whole, kept) >= MIN_SNR_DB


def test_the_check_fails_when_the_lstm_restarts_each_chunk(small_codec, four_seconds, monkeypatch):
    # A decode whose LSTM forgets its state between chunks starts each chunk cold: the
    # boundaries show, context or not. This is what carrying the state is for.
    codes, whole = four_seconds
    compute = codec._FrameFeatures._compute

    def cold(self, end, to):
        self.state = None
        return compute(self, end, to)

    monkeypatch.setattr(codec._FrameFeatures, "_compute", cold)
    with torch.inference_mode():
        forgetful = codec.decode(small_codec, codes, chunk_frames=100)
    assert worst_window_snr(whole, forgetful) < MIN_SNR_DB


def test_decoding_from_a_start_frame_skips_the_prompt(small_codec):
    codes = torch.randint(0, 2048, (4, 300), generator=torch.Generator().manual_seed(5))
    with torch.inference_mode():
        whole = codec.decode(small_codec, codes, chunk_frames=100)
        tail = codec.decode(small_codec, codes, start=130, chunk_frames=100)
    assert tail.shape == (1, 170 * HOP)
    assert snr_db(whole[:, 130 * HOP :], tail) >= MIN_SNR_DB


def test_encoding_gives_the_codes_a_decode_reads(small_codec):
    audio = np.random.default_rng(6).normal(0, 0.1, (1, 2 * 32_000)).astype(np.float32)
    with torch.inference_mode():
        codes = codec.encode(small_codec, audio)
        again = codec.encode(small_codec, audio)
    assert codes.shape == (4, 100) and codes.dtype == torch.long
    assert int(codes.min()) >= 0 and int(codes.max()) < 2048
    torch.testing.assert_close(codes, again)
    with pytest.raises(ValueError, match="1 channel"):
        codec.encode(small_codec, np.zeros((2, 640), dtype=np.float32))


def test_a_stereo_checkpoint_encodes_and_decodes_each_channel_alone():
    # Stereo MusicGen interleaves left and right codebooks (left 0, right 0, left 1, ...), each
    # channel its own EnCodec stream: silence on the right must stay silence. The codec reads
    # only the EnCodec and the configuration, so only the EnCodec of the stereo twin is drawn;
    # the text encoder and the decoder (0.5 B parameters) stay shapes on the meta device.
    with torch.device("meta"):
        model = MusicgenForConditionalGeneration(twin_config("twin:facebook/musicgen-stereo-small"))
    materialise(model.audio_encoder, dtype=torch.float32, device="cpu", seed=TWIN_SEED)
    rng = np.random.default_rng(7)
    audio = np.stack([rng.normal(0, 0.1, 32_000), np.zeros(32_000)]).astype(np.float32)
    with torch.inference_mode():
        codes = codec.encode(model, audio)
        decoded = codec.decode(model, codes)
        mono = model.audio_encoder.encode(torch.from_numpy(audio[1:])[None]).audio_codes[0, 0]
    assert codes.shape == (8, 50)
    torch.testing.assert_close(codes[1::2], mono)  # the right channel's codebooks
    assert decoded.shape == (2, 32_000)
    with torch.inference_mode():
        right_alone = codec._decode_once(model, torch.repeat_interleave(mono, 2, dim=0))[1]
    np.testing.assert_allclose(decoded[1], right_alone.numpy(), atol=1e-5)


def test_a_codec_without_the_lstm_is_refused():
    # The stream reads MusicGen's EnCodec layer by layer: another layout is an error, not audio.
    other = SimpleNamespace(decoder=SimpleNamespace(layers=[torch.nn.Identity()] * 3))
    with pytest.raises(TypeError, match="convolution, then an LSTM"):
        codec._FrameFeatures(other, torch.zeros((4, 10), dtype=torch.long), context=4)
