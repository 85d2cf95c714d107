"""Shape twins: the published architectures, their parameter counts, seeded weights, generation.

Sources of the published values below (none of them is read by the code under test):

- [conv] transformers 4.44.2, ``models/musicgen/convert_musicgen_transformers.py``: the script
  that made the ``facebook/musicgen-*`` checkpoints. ``decoder_config_from_checkpoint`` gives
  small 1024/24/16, medium 1536/48/24, large 2048/48/32 (hidden, layers, heads),
  ``ffn_dim = 4 * hidden``, and for ``stereo`` 8 codebooks and 2 audio channels (else 4 and 1);
  it loads ``google-t5/t5-base`` and ``facebook/encodec_32khz``, and sets the generation config
  (start and pad token 2048, ``max_length = 30 * frame_rate``, sampling, guidance 3).
- [ac-lm] audiocraft 1.3.0, ``config/model/lm/model_scale/{small,medium,large}.yaml`` ("300M",
  "~1.5B", "~3.3B": dim/num_heads/num_layers as above), ``lm/default.yaml`` (hidden_scale 4,
  gelu), ``lm/musicgen_lm.yaml`` (n_q 4, card 2048, no biases, pre-norm),
  ``conditioner/text2music.yaml`` (t5-base), ``models/musicgen.py`` (top_k 250, cfg 3.0).
- [t5] the ``google-t5/t5-base`` config.json: d_model 768, num_layers 12, num_heads 12,
  d_ff 3072, d_kv 64, vocab_size 32128, relative_attention_num_buckets 32, relu, eps 1e-6;
  relative_attention_max_distance is not in it, so T5Config's 128 applies.
- [enc] transformers 4.44.2, ``models/encodec/convert_encodec_checkpoint_to_pytorch.py``, the
  ``encodec_32khz`` branch: upsampling_ratios [8, 5, 4, 4], target_bandwidths [2.2],
  num_filters 64, sampling_rate 32000, codebook_size 2048, no causal conv, no normalisation,
  no conv shortcut; the rest is EncodecConfig's 24 kHz default (hidden_size 128, 2 LSTM
  layers, ...), which audiocraft's ``config/model/encodec/default.yaml`` (SEANet dimension 128,
  lstm 2, 1 residual layer, kernels 7/7/3, compress 2, dilation base 2, weight norm) and
  ``encodec_large_nq4_s640.yaml`` (ratios [8, 5, 4, 4], n_filters 64, bins 2048, n_q 4) confirm.
- [card] the facebook/musicgen-small model card: "a 32kHz EnCodec tokenizer with 4 codebooks
  sampled at 50 Hz"; the paper (arXiv 2306.05284) and audiocraft name the language models
  300M, 1.5B and 3.3B.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from typing import Any

import pytest
import torch

from dgx_music.errors import UnknownModelError
from dgx_music.generation.twins import (
    TWIN_CHECKPOINTS,
    TWIN_CONFIG_DIR,
    TWIN_SEED,
    is_twin,
    materialise,
    parameter_counts,
    twin_config,
    twin_processor,
)
from tests.utils.twins import SMALL, BuiltTwin
from tests.utils.twins import small_twin as built_small_twin

#: One worker runs this module and test_codec.py, so musicgen-small's twin is built once.
pytestmark = pytest.mark.xdist_group("twins")

#: Blocker threshold of the spec for building the small twin on a CPU, seconds.
SMALL_BUILD_LIMIT = 30.0

#: hidden_size, num_hidden_layers, num_attention_heads, ffn_dim, num_codebooks, audio_channels
#: of each decoder [conv] [ac-lm].
DECODERS = {
    "twin:facebook/musicgen-small": (1024, 24, 16, 4096, 4, 1),
    "twin:facebook/musicgen-medium": (1536, 48, 24, 6144, 4, 1),
    "twin:facebook/musicgen-large": (2048, 48, 32, 8192, 4, 1),
    "twin:facebook/musicgen-stereo-small": (1024, 24, 16, 4096, 8, 2),
    "twin:facebook/musicgen-stereo-medium": (1536, 48, 24, 6144, 8, 2),
    "twin:facebook/musicgen-stereo-large": (2048, 48, 32, 8192, 8, 2),
}
#: What every decoder shares: 2048 codes a codebook, token 2048 starts and pads [ac-lm] [conv];
#: sinusoidal positions for 2048 steps, gelu, no embedding scale, untied heads.
DECODER_COMMON: dict[str, Any] = {
    "vocab_size": 2048,
    "max_position_embeddings": 2048,
    "pad_token_id": 2048,
    "bos_token_id": 2048,
    "activation_function": "gelu",
    "scale_embedding": False,
    "tie_word_embeddings": False,
}
#: The T5-base text encoder [t5] [ac-lm].
T5_BASE: dict[str, Any] = {
    "d_model": 768,
    "num_layers": 12,
    "num_heads": 12,
    "d_ff": 3072,
    "d_kv": 64,
    "vocab_size": 32128,
    "relative_attention_num_buckets": 32,
    "relative_attention_max_distance": 128,
    "feed_forward_proj": "relu",
    "layer_norm_epsilon": 1e-6,
}
#: The 32 kHz EnCodec [enc].
ENCODEC_32KHZ: dict[str, Any] = {
    "sampling_rate": 32000,
    "audio_channels": 1,
    "codebook_size": 2048,
    "codebook_dim": 128,
    "target_bandwidths": [2.2],
    "upsampling_ratios": [8, 5, 4, 4],
    "hidden_size": 128,
    "num_filters": 64,
    "num_lstm_layers": 2,
    "num_residual_layers": 1,
    "kernel_size": 7,
    "last_kernel_size": 7,
    "residual_kernel_size": 3,
    "dilation_growth_rate": 2,
    "compress": 2,
    "norm_type": "weight_norm",
    "use_causal_conv": False,
    "normalize": False,
    "use_conv_shortcut": False,
}
#: Codec frames per second [card].
FRAME_RATE = 50  # Hz
#: Codebooks per channel [card].
CODEBOOKS_PER_CHANNEL = 4
#: generation_config.json of the checkpoints [conv] [ac-lm].
GENERATION = {
    "do_sample": True,
    "top_k": 250,
    "guidance_scale": 3.0,
    "max_length": 1500,
    "decoder_start_token_id": 2048,
    "pad_token_id": 2048,
    "bos_token_id": 2048,
}
#: Width of the T5-base states the decoder's cross-attention reads, through enc_to_dec_proj.
TEXT_WIDTH = 768

#: Language-model sizes the paper and audiocraft give (parameters), and what they leave out
#: is explained in test_decoder_counts_are_the_transformer_plus_embeddings_and_heads.
PAPER_LM_SIZES = {
    "twin:facebook/musicgen-small": 300e6,
    "twin:facebook/musicgen-medium": 1.5e9,
    "twin:facebook/musicgen-large": 3.3e9,
}


def config_differences(config: Any, name: str) -> list[str]:
    """Every value of the published tables that ``config`` (a MusicgenConfig) does not hold."""
    hidden, layers, heads, ffn, codebooks, channels = DECODERS[name]
    expected = {
        "decoder": {
            **DECODER_COMMON,
            "hidden_size": hidden,
            "num_hidden_layers": layers,
            "num_attention_heads": heads,
            "ffn_dim": ffn,
            "num_codebooks": codebooks,
            "audio_channels": channels,
        },
        "text_encoder": T5_BASE,
        "audio_encoder": ENCODEC_32KHZ,
    }
    found = []
    for part, values in expected.items():
        sub = getattr(config, part)
        for key, value in values.items():
            actual = getattr(sub, key)
            if isinstance(value, list):
                actual = list(actual)
            if actual != value:
                found.append(f"{part}.{key} = {actual!r}, published {value!r}")
    codec = config.audio_encoder
    hop = math.prod(codec.upsampling_ratios)  # samples a frame
    if codec.sampling_rate / hop != FRAME_RATE:
        found.append(f"frame rate {codec.sampling_rate / hop} Hz, published {FRAME_RATE}")
    # kbps = frames/s x codebooks x bits a code: 2.2 kbps = 50 x 4 x 11 bits.
    bits = math.log2(codec.codebook_size)
    codebooks_from_bandwidth = codec.target_bandwidths[-1] * 1000 / (FRAME_RATE * bits)
    if codebooks_from_bandwidth != CODEBOOKS_PER_CHANNEL:
        found.append(f"{codebooks_from_bandwidth} codebooks from the bandwidth, published 4")
    if config.decoder.num_codebooks != CODEBOOKS_PER_CHANNEL * config.decoder.audio_channels:
        found.append("decoder codebooks are not 4 per audio channel")
    return found


# ---------------------------------------------------------------------------------------------
# Configurations
# ---------------------------------------------------------------------------------------------


def test_one_configuration_file_per_twin():
    files = {path.stem for path in TWIN_CONFIG_DIR.glob("*.json")}
    assert files == {name.rpartition("/")[2] for name in TWIN_CHECKPOINTS}
    assert set(DECODERS) == set(TWIN_CHECKPOINTS)


@pytest.mark.parametrize("name", TWIN_CHECKPOINTS)
def test_configuration_holds_the_published_values(name: str):
    config = twin_config(name)
    assert config_differences(config, name) == []
    assert config.audio_encoder.frame_rate == FRAME_RATE
    assert config.audio_encoder.num_quantizers == CODEBOOKS_PER_CHANNEL
    assert config.model_type == "musicgen"


@pytest.mark.parametrize("name", TWIN_CHECKPOINTS)
def test_configuration_file_sets_every_value_itself(name: str):
    """Nothing is left to a library default, which a transformers release could change."""
    from transformers import EncodecConfig, MusicgenDecoderConfig, T5Config

    path = TWIN_CONFIG_DIR / f"{name.rpartition('/')[2]}.json"
    stored = json.loads(path.read_text(encoding="utf-8"))
    for part, config_class in (
        ("text_encoder", T5Config),
        ("audio_encoder", EncodecConfig),
        ("decoder", MusicgenDecoderConfig),
    ):
        missing = set(config_class().to_dict()) - set(stored[part]) - {"transformers_version"}
        assert not missing, f"{part} leaves {sorted(missing)} to the library"


def test_library_defaults_fail_the_published_table():
    """T5Config() is t5-small, EncodecConfig() the 24 kHz codec; the table must catch both."""
    from transformers import EncodecConfig, MusicgenConfig, MusicgenDecoderConfig, T5Config

    published = twin_config("twin:facebook/musicgen-medium")
    parts = {
        "text_encoder": published.text_encoder,
        "audio_encoder": published.audio_encoder,
        "decoder": published.decoder,
    }
    for part, default in (
        ("text_encoder", T5Config()),
        ("audio_encoder", EncodecConfig()),
        ("decoder", MusicgenDecoderConfig()),
    ):
        swapped = MusicgenConfig(**{**parts, part: default})
        differences = config_differences(swapped, "twin:facebook/musicgen-medium")
        assert any(line.startswith(part) for line in differences), (
            f"library-default {part} passed the table"
        )


def test_unknown_twin_names_are_refused_with_the_choices():
    assert is_twin(SMALL)
    assert not is_twin("facebook/musicgen-small")
    assert not is_twin("twin:facebook/musicgen-melody")
    with pytest.raises(UnknownModelError) as caught:
        twin_config("twin:facebook/musicgen-melody")
    assert caught.value.field == "model"
    assert SMALL in caught.value.choices
    with pytest.raises(UnknownModelError):
        parameter_counts("tiny")


def test_importing_the_module_does_not_import_torch():
    code = "import sys, dgx_music.generation.twins; print('torch' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "False"


# ---------------------------------------------------------------------------------------------
# Parameter counts (meta device: no weights allocated)
# ---------------------------------------------------------------------------------------------


def t5_encoder_parameters() -> int:
    """T5-base's encoder: shared embeddings, 12 blocks, one relative-position table, final norm."""
    d, ff = T5_BASE["d_model"], T5_BASE["d_ff"]
    block = 4 * d * d + 2 * d * ff + 2 * d  # q, k, v, o; wi, wo; two RMS norms (no biases)
    embeddings = T5_BASE["vocab_size"] * d
    relative = T5_BASE["relative_attention_num_buckets"] * T5_BASE["num_heads"]
    return embeddings + T5_BASE["num_layers"] * block + relative + d


def seanet_parameters() -> int:
    """The 32 kHz EnCodec's SEANet encoder and decoder, counted from its structure.

    Each convolution has weights, a bias, and weight norm's magnitude (one per output channel of
    a convolution, per input channel of a transposed one, as ``dim=0`` gives).
    """
    filters, dimension = ENCODEC_32KHZ["num_filters"], ENCODEC_32KHZ["hidden_size"]
    ratios = ENCODEC_32KHZ["upsampling_ratios"]

    def conv(c_in: int, c_out: int, kernel: int, transposed: bool = False) -> int:
        return c_in * c_out * kernel + c_out + (c_in if transposed else c_out)

    def lstm(width: int) -> int:  # weights ih and hh, biases ih and hh, 4 gates, per layer
        return ENCODEC_32KHZ["num_lstm_layers"] * (2 * 4 * width * width + 2 * 4 * width)

    width = filters * 2 ** len(ratios)  # 1024 channels at 50 Hz
    encoder = conv(1, filters, 7)
    channels = filters
    for ratio in reversed(ratios):  # residual block (k3 to half, k1 back), strided conv
        encoder += conv(channels, channels // 2, 3) + conv(channels // 2, channels, 1)
        encoder += conv(channels, 2 * channels, 2 * ratio)
        channels *= 2
    encoder += lstm(width) + conv(width, dimension, 7)
    decoder = conv(dimension, width, 7) + lstm(width)
    for ratio in ratios:
        decoder += conv(channels, channels // 2, 2 * ratio, transposed=True)
        decoder += conv(channels // 2, channels // 4, 3) + conv(channels // 4, channels // 2, 1)
        channels //= 2
    decoder += conv(filters, 1, 7)
    return encoder + decoder


def decoder_parts(name: str) -> dict[str, int]:
    """The language model of twin ``name`` by part, from its published sizes."""
    hidden, layers, _, ffn, codebooks, _ = DECODERS[name]
    vocab = DECODER_COMMON["vocab_size"]
    assert ffn == 4 * hidden
    return {
        # per layer: self-attention 4h², cross-attention 4h², feed-forward 2·h·4h = 8h²
        "16·h²·L": 16 * hidden**2 * layers,
        "layer norms": layers * 3 * 2 * hidden + 2 * hidden,  # 3 a layer and the final one
        "embeddings": codebooks * (vocab + 1) * hidden,  # + 1: the start/pad token 2048
        "lm heads": codebooks * hidden * vocab,
        "text projection": TEXT_WIDTH * hidden + hidden,  # enc_to_dec_proj, with bias
    }


def test_text_encoder_is_t5_base_encoder_only():
    # 109,628,544: T5-base's 222.9 M less its decoder; the embeddings count once.
    assert t5_encoder_parameters() == 109_628_544
    for name in TWIN_CHECKPOINTS:
        assert parameter_counts(name)["text_encoder"] == 109_628_544


def test_codec_is_the_32_khz_encodec():
    """56,884,674 parameters: 28.44 M encoder, 28.44 M decoder, of which 2 x 16.8 M are LSTMs.

    The 4 codebooks (2048 x 128 entries, with their running averages and counts: 2,105,348
    values) are buffers, not parameters; with them the stored checkpoint holds 58.99 M values,
    the "59M" a model page shows. 7,937 of the parameters are weight-norm magnitudes.
    """
    assert seanet_parameters() == 56_884_674
    for name in TWIN_CHECKPOINTS:
        assert parameter_counts(name)["audio_encoder"] == 56_884_674


@pytest.mark.parametrize("name", TWIN_CHECKPOINTS)
def test_decoder_counts_are_the_transformer_plus_embeddings_and_heads(name: str):
    """The language model is 16·h²·L plus what the formula leaves out.

    16·h²·L is 403 M / 1.81 B / 3.22 B for small / medium / large; the paper's 300 M / 1.5 B /
    3.3 B are round names, not counts (audiocraft's own yaml says "300M" beside the same 1024
    x 24 model). Embeddings and LM heads add 2 x codebooks x 2048 x h (16.8 M for small, 33.6 M
    for stereo-small), norms and the 768 -> h text projection under 1 M. The transformers
    counts equal the sum of these parts exactly.
    """
    parts = decoder_parts(name)
    counts = parameter_counts(name)
    assert counts["decoder"] == sum(parts.values()), parts
    formula = parts["16·h²·L"] + parts["embeddings"] + parts["lm heads"]
    assert abs(counts["decoder"] - formula) / formula < 0.05
    if DECODERS[name][4] == CODEBOOKS_PER_CHANNEL:
        # Mono: within 5 % of the bare formula too (small +4.4 %); the stereo models' 8
        # codebooks double the embeddings and heads (stereo-small +8.6 %).
        assert abs(counts["decoder"] - parts["16·h²·L"]) / parts["16·h²·L"] < 0.05
    assert counts["total"] == counts["text_encoder"] + counts["audio_encoder"] + counts["decoder"]


def test_counts_of_the_three_sizes():
    """Recorded values: small 420.4 M, medium 1.839 B, large 3.257 B language models."""
    decoders = {name: parameter_counts(name)["decoder"] for name in PAPER_LM_SIZES}
    assert decoders == {
        "twin:facebook/musicgen-small": 420_371_456,
        "twin:facebook/musicgen-medium": 1_838_737_920,
        "twin:facebook/musicgen-large": 3_256_956_928,
    }
    # Ordered as the paper's sizes, each above its round name but small's by 40 %.
    for name, size in PAPER_LM_SIZES.items():
        assert size * 0.95 < decoders[name] < size * 1.45
    # The whole small model, 586.9 M, plus the buffers stored beside the weights (codebooks
    # 2.1 M, and the 2048 x 1024 sinusoids, a frozen parameter in the transformers that wrote
    # the checkpoint) is the 591 M the Hub shows for facebook/musicgen-small.
    assert parameter_counts(SMALL)["total"] == 586_884_674


def test_parameter_counts_return_a_fresh_dict():
    counts = parameter_counts(SMALL)
    counts["total"] = 0
    assert parameter_counts(SMALL)["total"] == 586_884_674


# ---------------------------------------------------------------------------------------------
# Weights: materialise against from_pretrained, determinism
# ---------------------------------------------------------------------------------------------


def tiny_reference(dtype: torch.dtype) -> Any:
    from transformers import MusicgenForConditionalGeneration

    from dgx_music.generation.engine import TINY_MODEL_DIR

    return MusicgenForConditionalGeneration.from_pretrained(
        TINY_MODEL_DIR, local_files_only=True, dtype=dtype
    )


def tiny_materialised(dtype: torch.dtype, seed: int) -> Any:
    """The tiny checkpoint's architecture through the twins' path (meta, then materialise)."""
    from transformers import MusicgenForConditionalGeneration

    reference = tiny_reference(torch.float32)
    with torch.device("meta"):
        model = MusicgenForConditionalGeneration(reference.config)
    materialise(model, dtype=dtype, device="cpu", seed=seed)
    return model


def tensors(model: Any) -> dict[str, torch.Tensor]:
    return dict([*model.named_parameters(), *model.named_buffers()])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_materialised_model_has_from_pretrained_shapes_dtypes_and_buffers(dtype: torch.dtype):
    """Same tensors, shapes and dtypes (float16 keeps T5's ``wo`` in float32), same buffers."""
    reference = tensors(tiny_reference(dtype))
    twin = tensors(tiny_materialised(dtype, seed=TWIN_SEED))
    assert {name: (t.shape, t.dtype) for name, t in twin.items()} == {
        name: (t.shape, t.dtype) for name, t in reference.items()
    }
    if dtype == torch.float16:
        assert twin["text_encoder.encoder.block.0.layer.1.DenseReluDense.wo.weight"].dtype == (
            torch.float32
        )
    # The shape-derived buffers: sinusoidal positions, EnCodec's stride and padding.
    for name, value in reference.items():
        if name.endswith(("embed_positions.weights", "stride", "kernel_size", "padding_total")):
            assert torch.equal(twin[name], value), name


def test_same_seed_same_weights_other_seed_other_weights():
    first = tensors(tiny_materialised(torch.float32, seed=TWIN_SEED))
    second = tensors(tiny_materialised(torch.float32, seed=TWIN_SEED))
    other = tensors(tiny_materialised(torch.float32, seed=TWIN_SEED + 1))
    assert first.keys() == second.keys()
    assert all(torch.equal(first[name], second[name]) for name in first)
    assert not torch.equal(first["decoder.lm_heads.0.weight"], other["decoder.lm_heads.0.weight"])


def test_tied_embeddings_stay_tied():
    model = tiny_materialised(torch.float32, seed=TWIN_SEED)
    assert model.text_encoder.shared.weight is model.text_encoder.encoder.embed_tokens.weight


# ---------------------------------------------------------------------------------------------
# The small twin, built once
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_twin() -> BuiltTwin:
    """The small twin, with its build time and torch's global random state around the build
    (built once per process: test_codec.py uses it too)."""
    return built_small_twin()


def test_small_twin_builds_within_the_limit(small_twin: BuiltTwin):
    assert small_twin.seconds < SMALL_BUILD_LIMIT


def test_build_leaves_the_global_random_state_alone(small_twin: BuiltTwin):
    assert torch.equal(small_twin.rng_before, small_twin.rng_after)


def test_small_twin_has_the_published_architecture(small_twin: BuiltTwin):
    model = small_twin.model
    assert config_differences(model.config, SMALL) == []
    assert sum(param.numel() for param in model.parameters()) == 586_884_674
    assert not model.training
    assert {param.dtype for param in model.parameters()} == {torch.float32}
    assert {param.device.type for param in model.parameters()} == {"cpu"}


def test_small_twin_weights_come_from_the_seed(small_twin: BuiltTwin):
    """The first tensor drawn is T5's embedding table: a fresh generator at TWIN_SEED redraws it."""
    shared = small_twin.model.text_encoder.shared.weight
    generator = torch.Generator().manual_seed(TWIN_SEED)
    expected = torch.empty(shared.shape).normal_(0.0, 0.02, generator=generator)
    assert torch.equal(shared.detach(), expected)


def test_small_twin_norms_biases_codebooks_and_weight_norm(small_twin: BuiltTwin):
    from transformers.models.t5.modeling_t5 import T5LayerNorm

    model = small_twin.model
    for module in model.modules():
        if isinstance(module, torch.nn.LayerNorm | T5LayerNorm):
            assert torch.all(module.weight == 1)
        bias = getattr(module, "bias", None)
        if isinstance(bias, torch.Tensor):
            assert torch.all(bias == 0)
    for layer in model.audio_encoder.quantizer.layers:
        assert layer.codebook.embed.std() > 0.5
        assert torch.equal(layer.codebook.embed, layer.codebook.embed_avg)
    # Weight norm holds: g is |v| per output channel, so the weight the conv uses is v itself.
    checked = 0
    for module in model.audio_encoder.modules():
        if torch.nn.utils.parametrize.is_parametrized(module, "weight"):
            originals = module.parametrizations.weight
            magnitude, direction = originals.original0, originals.original1
            norm = torch.norm_except_dim(direction, 2, 0)
            assert torch.allclose(magnitude, norm)
            assert torch.allclose(module.weight, direction, atol=1e-6)
            checked += 1
    assert checked == 28


def test_small_twin_generation_config_and_processor(small_twin: BuiltTwin):
    config = small_twin.model.generation_config
    assert {key: getattr(config, key) for key in GENERATION} == GENERATION
    processor = small_twin.processor
    assert processor.feature_extractor.feature_size == 1
    ids = processor(text=["lo-fi beat, 90 bpm"], return_tensors="pt")["input_ids"]
    assert int(ids.max()) < T5_BASE["vocab_size"]


def test_stereo_twin_processor_takes_two_channels():
    processor = twin_processor("twin:facebook/musicgen-stereo-small")
    assert processor.feature_extractor.feature_size == 2


def test_small_twin_generates_a_short_clip(small_twin: BuiltTwin):
    model, processor = small_twin.model, small_twin.processor
    frames = 5  # 0.1 s at 50 Hz
    inputs = processor(text=["ambient pad"], padding=True, return_tensors="pt")
    # transformers samples from the global generator: keep this test's draws to itself.
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(0)
        # + 3: the delay pattern completes a frame three steps after its first codebook.
        audio = model.generate(**inputs, max_new_tokens=frames + 3)
    hop = math.prod(ENCODEC_32KHZ["upsampling_ratios"])
    assert tuple(audio.shape) == (1, 1, frames * hop)
    assert torch.isfinite(audio).all()
    assert float(audio.std()) > 1e-3  # noise, not silence


def test_the_benchmarks_name_every_twin():
    from benchmarks.common import TWINS

    assert list(TWIN_CHECKPOINTS) == TWINS
