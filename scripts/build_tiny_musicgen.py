"""Build the ``tiny`` model: a randomly initialised MusicGen checkpoint of about 3 MB.

The checkpoint has the real ``facebook/musicgen-small`` layout (a T5 text encoder, a 32 kHz
EnCodec with four 2048-entry codebooks at 50 frames per second, a MusicGen decoder predicting
four codebooks with the delay pattern) with every dimension shrunk, so tests and benchmarks load
it through exactly the same ``from_pretrained`` code as the real weights, with no download.
Its audio is noise-like: it checks plumbing, lengths, seeds and speed, never musicality.

Weights come from a fixed seed, so running the script twice writes identical files::

    .venv/bin/python scripts/build_tiny_musicgen.py            # writes the packaged asset
    .venv/bin/python scripts/build_tiny_musicgen.py --out DIR  # writes elsewhere
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import shutil
import string
from pathlib import Path

import torch
from transformers import (
    EncodecConfig,
    EncodecFeatureExtractor,
    GenerationConfig,
    MusicgenConfig,
    MusicgenDecoderConfig,
    MusicgenForConditionalGeneration,
    MusicgenProcessor,
    T5Config,
    T5Tokenizer,
)

logger = logging.getLogger("build_tiny_musicgen")

#: Where the packaged asset lives.
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "src" / "dgx_music" / "assets" / "tiny-musicgen"
#: Seed of every random weight; change it and the asset changes.
SEED = 20240601
#: Largest total size of the asset, bytes.
MAX_ASSET_BYTES = 5 * 1024 * 1024

#: EnCodec as in facebook/musicgen-small: 32 kHz, hop 8*5*4*4 = 640 samples = 50 frames/s,
#: 2.2 kbps = 4 codebooks of 2048 entries (11 bits) at 50 Hz.
SAMPLE_RATE = 32_000  # Hz
UPSAMPLING_RATIOS = [8, 5, 4, 4]
TARGET_BANDWIDTH = 2.2  # kbps
CODEBOOK_SIZE = 2048
NUM_CODEBOOKS = 4
#: Shrunk widths: model dimensions of the text encoder, codec and decoder.
TEXT_WIDTH = 16
CODEC_WIDTH = 16
CODEC_FILTERS = 4
DECODER_WIDTH = 16
#: Gain of the codec's last convolution (linear), for a realistic output level.
CODEC_OUTPUT_GAIN = 8.0
#: Longest clip the generation config allows by default, seconds (as the real checkpoints: 30 s).
DEFAULT_MAX_SECONDS = 30

#: Words the tokenizer keeps whole (space-separated); anything else falls back to characters.
COMMON_WORDS = (
    "a an and the of with in on for to by at from into over under slow fast "
    "music song track beat beats loop melody harmony rhythm groove bass drums drum kick snare "
    "hat hats cymbal piano guitar synth synths strings violin cello flute sax saxophone trumpet "
    "horn horns brass organ pad pads lead vocal choir bell bells percussion orchestra "
    "orchestral ambient electronic acoustic jazz rock pop hip hop lofi lo-fi funk soul blues "
    "house techno trance dubstep disco reggae classical cinematic epic calm chill happy sad "
    "dark bright warm soft loud heavy light dreamy energetic upbeat mellow relaxing "
    "major minor key bpm tempo tempos chord chords sharp flat "
    "c d e f g a b"
)


def build_vocab() -> list[tuple[str, float]]:
    """The unigram vocabulary: T5's special pieces, common words, then characters.

    Returns
    -------
    list of (piece, log-probability score)
        ``<pad>`` = 0, ``</s>`` = 1, ``<unk>`` = 2 as in T5. Words score higher than characters
        so the unigram model prefers whole words.
    """
    vocab: list[tuple[str, float]] = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -3.0)]
    seen = {piece for piece, _ in vocab}
    for word in COMMON_WORDS.split():
        piece = "▁" + word
        if piece not in seen:
            vocab.append((piece, -5.0))
            seen.add(piece)
    for char in string.ascii_letters + string.digits + string.punctuation:
        for piece in (char, "▁" + char):
            if piece not in seen:
                vocab.append((piece, -8.0 if piece.startswith("▁") else -9.0))
                seen.add(piece)
    return vocab


def build_model(vocab_size: int) -> MusicgenForConditionalGeneration:
    """A randomly initialised MusicGen with tiny dimensions, from :data:`SEED`."""
    text_encoder = T5Config(
        vocab_size=vocab_size,
        d_model=TEXT_WIDTH,
        d_kv=8,
        d_ff=32,
        num_layers=1,
        num_decoder_layers=1,
        num_heads=2,
        relative_attention_num_buckets=8,
        relative_attention_max_distance=32,
        dropout_rate=0.0,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    audio_encoder = EncodecConfig(
        sampling_rate=SAMPLE_RATE,
        audio_channels=1,
        target_bandwidths=[TARGET_BANDWIDTH],
        upsampling_ratios=UPSAMPLING_RATIOS,
        hidden_size=CODEC_WIDTH,
        codebook_dim=CODEC_WIDTH,
        codebook_size=CODEBOOK_SIZE,
        num_filters=CODEC_FILTERS,
        num_residual_layers=1,
        num_lstm_layers=1,
        norm_type="weight_norm",
        use_causal_conv=False,
        use_conv_shortcut=False,
        normalize=False,
    )
    decoder = MusicgenDecoderConfig(
        vocab_size=CODEBOOK_SIZE,
        max_position_embeddings=2048,
        num_hidden_layers=1,
        ffn_dim=32,
        num_attention_heads=2,
        hidden_size=DECODER_WIDTH,
        dropout=0.0,
        num_codebooks=NUM_CODEBOOKS,
        audio_channels=1,
        pad_token_id=CODEBOOK_SIZE,
        bos_token_id=CODEBOOK_SIZE,
    )
    config = MusicgenConfig(text_encoder=text_encoder, audio_encoder=audio_encoder, decoder=decoder)
    if audio_encoder.frame_rate != 50 or audio_encoder.num_quantizers != NUM_CODEBOOKS:
        raise RuntimeError(
            f"codec layout is {audio_encoder.frame_rate} Hz x {audio_encoder.num_quantizers} "
            "codebooks; MusicGen's is 50 Hz x 4"
        )
    torch.manual_seed(SEED)
    model = MusicgenForConditionalGeneration(config)
    model.eval()
    randomise_codebooks(model)
    make_codec_output_code_driven(model)
    # The real checkpoints sample in the same way; these values go to generation_config.json.
    frames = DEFAULT_MAX_SECONDS * audio_encoder.frame_rate
    model.generation_config = GenerationConfig(
        do_sample=True,
        guidance_scale=3.0,
        top_k=250,
        max_length=frames + NUM_CODEBOOKS,  # + BOS and the codebook delay
        bos_token_id=CODEBOOK_SIZE,
        pad_token_id=CODEBOOK_SIZE,
        decoder_start_token_id=CODEBOOK_SIZE,
    )
    return model


def randomise_codebooks(model: MusicgenForConditionalGeneration) -> None:
    """Give every EnCodec codebook random entries.

    transformers initialises codebooks to zeros (training fills them by k-means), which would
    decode every token to the same vector and make the audio independent of the seed.
    """
    generator = torch.Generator().manual_seed(SEED + 1)
    with torch.no_grad():
        for layer in model.audio_encoder.quantizer.layers:
            codebook = layer.codebook
            codebook.embed.copy_(torch.randn(codebook.embed.shape, generator=generator))
            codebook.embed_avg.copy_(codebook.embed)
            codebook.cluster_size.fill_(1.0)


def make_codec_output_code_driven(model: MusicgenForConditionalGeneration) -> None:
    """Zero the codec decoder's biases and raise its output gain.

    With random biases the waveform is mostly a DC offset plus a fixed pattern that no token
    changes; without them it is zero-mean and follows the generated codes. The gain brings the
    level to about -23 dBFS RMS, near what the real checkpoints produce.
    """
    with torch.no_grad():
        for module in model.audio_encoder.decoder.modules():
            is_conv = isinstance(module, torch.nn.Conv1d | torch.nn.ConvTranspose1d)
            if is_conv and module.bias is not None:
                module.bias.zero_()
        last_conv = model.audio_encoder.decoder.layers[-1].conv
        last_conv.parametrizations.weight.original0.mul_(CODEC_OUTPUT_GAIN)


def build_processor() -> MusicgenProcessor:
    """The tokenizer plus EnCodec feature extractor, as ``facebook/musicgen-*`` ship them."""
    tokenizer = T5Tokenizer(vocab=build_vocab(), extra_ids=0, model_max_length=512)
    feature_extractor = EncodecFeatureExtractor(
        feature_size=1, sampling_rate=SAMPLE_RATE, padding_value=0.0
    )
    return MusicgenProcessor(feature_extractor=feature_extractor, tokenizer=tokenizer)


def build(out: Path) -> dict[str, str]:
    """Write the checkpoint to ``out`` (replacing it) and return ``{file name: sha256}``."""
    processor = build_processor()
    model = build_model(vocab_size=len(processor.tokenizer))
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    model.save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)
    digests = {}
    total = 0
    for path in sorted(out.iterdir()):
        data = path.read_bytes()
        total += len(data)
        digests[path.name] = hashlib.sha256(data).hexdigest()
        logger.info("%-28s %9d bytes  sha256 %s", path.name, len(data), digests[path.name][:16])
    logger.info("total %d bytes (%.2f MB) in %s", total, total / 1e6, out)
    if total >= MAX_ASSET_BYTES:
        raise SystemExit(f"asset is {total} bytes; it must stay under {MAX_ASSET_BYTES}")
    return digests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(1)
    build(args.out)


if __name__ == "__main__":
    main()
