"""Shape twins: the real MusicGen architectures with seeded random weights, for cost measurement.

A shape twin (``twin:facebook/musicgen-small``, ... :data:`TWIN_CHECKPOINTS`) is
``MusicgenForConditionalGeneration`` built from the published configuration of a
``facebook/musicgen-*`` checkpoint (T5-base text encoder, the 32 kHz EnCodec, the checkpoint's
decoder), shipped as JSON in ``dgx_music/assets/twins``, with weights drawn from
:data:`TWIN_SEED`. Generation runs a fixed number of decoding steps whatever the weights hold
(the decoder has no end-of-sequence token), so a twin costs the time and memory the real
checkpoint costs, on machines that have no weights: CI, a fresh DGX, a laptop.

Its audio is noise. A twin is never offered as music: it exists to measure speed and memory,
and any listening, quality or musicality check must use the real checkpoints.

torch and transformers are imported inside the functions that need them: the model registry
imports this module to know the twins' names, and that must stay cheap for the CLI.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dgx_music.errors import UnknownModelError

if TYPE_CHECKING:
    import torch
    from transformers import MusicgenConfig, MusicgenForConditionalGeneration, MusicgenProcessor

    #: Draws float32 values of a shape from N(0, std) with the twin's generator.
    Draw = Callable[[torch.Size, float], torch.Tensor]
    #: Casts a tensor named by its qualified name to the twin's device and dtype.
    Cast = Callable[[str, torch.Tensor], torch.Tensor]
    #: id of a meta parameter -> (that parameter, the real one that replaces it).
    Replacements = dict[int, tuple[torch.nn.Parameter, torch.nn.Parameter]]

logger = logging.getLogger(__name__)

#: Prefix that marks a model name as a shape twin.
TWIN_PREFIX = "twin:"
#: Every shape twin, one per published ``facebook/musicgen-*`` text-to-music checkpoint.
TWIN_CHECKPOINTS = (
    "twin:facebook/musicgen-small",
    "twin:facebook/musicgen-medium",
    "twin:facebook/musicgen-large",
    "twin:facebook/musicgen-stereo-small",
    "twin:facebook/musicgen-stereo-medium",
    "twin:facebook/musicgen-stereo-large",
)
#: Seed of every twin's weights. Changing it changes the weights (and the noise), never the cost.
TWIN_SEED = 20240603
#: Directory of the twins' configurations, one ``<checkpoint>.json`` per twin.
TWIN_CONFIG_DIR = Path(__file__).resolve().parent.parent / "assets" / "twins"
#: The ``generation_config.json`` of the ``facebook/musicgen-*`` checkpoints: sampling with
#: top-k 250 and classifier-free guidance 3 (audiocraft's ``MusicGen.set_generation_params``
#: defaults); ``max_length`` = 30 s x 50 frames/s as transformers' conversion script writes it;
#: token 2048, one past the 2048 codes, starts and pads every codebook stream.
TWIN_GENERATION_CONFIG: dict[str, Any] = {
    "do_sample": True,
    "top_k": 250,
    "guidance_scale": 3.0,
    "max_length": 1500,  # decoding steps
    "decoder_start_token_id": 2048,
    "pad_token_id": 2048,
    "bos_token_id": 2048,
}

#: Standard deviation of linear and embedding weights (MusicGen's ``initializer_factor``).
LINEAR_STD = 0.02
#: Standard deviation of the EnCodec codebook entries. Random entries, not transformers' zeros
#: (k-means fills them in training), so that different codes decode to different audio.
CODEBOOK_STD = 1.0


def is_twin(name: str) -> bool:
    """Whether ``name`` is one of :data:`TWIN_CHECKPOINTS`."""
    return name in TWIN_CHECKPOINTS


def twin_config_path(name: str) -> Path:
    """The JSON file holding twin ``name``'s configuration.

    Raises
    ------
    UnknownModelError
        ``name`` is not one of :data:`TWIN_CHECKPOINTS`.
    """
    if not is_twin(name):
        raise UnknownModelError(name, list(TWIN_CHECKPOINTS))
    checkpoint = name.removeprefix(TWIN_PREFIX).rpartition("/")[2]
    return TWIN_CONFIG_DIR / f"{checkpoint}.json"


def twin_config(name: str) -> MusicgenConfig:
    """The published configuration of the checkpoint that twin ``name`` stands for.

    Parameters
    ----------
    name
        One of :data:`TWIN_CHECKPOINTS`.

    Returns
    -------
    MusicgenConfig
        A fresh object each call, so a caller may change it.

    Raises
    ------
    UnknownModelError
        ``name`` is not a twin.
    """
    path = twin_config_path(name)
    from transformers import MusicgenConfig

    return MusicgenConfig.from_dict(json.loads(path.read_text(encoding="utf-8")))


def _meta_model(config: MusicgenConfig) -> MusicgenForConditionalGeneration:
    """``config``'s model on the meta device: every shape, no storage, built in well under 1 s."""
    import torch
    from transformers import MusicgenForConditionalGeneration

    with torch.device("meta"):
        return MusicgenForConditionalGeneration(config)


def build_twin(
    name: str, *, dtype: torch.dtype | None = None, device: str | torch.device = "cpu"
) -> tuple[MusicgenForConditionalGeneration, MusicgenProcessor]:
    """Build twin ``name``: the real architecture, weights from :data:`TWIN_SEED`, in eval mode.

    The weights are drawn from a generator of its own, so torch's global random state is left
    as it was, and the same seed on the same kind of device gives the same weights every run
    (CPU and CUDA generators draw different numbers).

    Parameters
    ----------
    name
        One of :data:`TWIN_CHECKPOINTS`.
    dtype
        Floating-point type of the weights (float32 when ``None``). As ``from_pretrained`` does,
        float16 keeps the modules transformers names in ``_keep_in_fp32_modules`` (T5's ``wo``)
        in float32.
    device
        Where the weights are allocated and drawn; building on the GPU skips a host copy.

    Returns
    -------
    model : MusicgenForConditionalGeneration
        With MusicGen's generation config (:data:`TWIN_GENERATION_CONFIG`).
    processor : MusicgenProcessor
        :func:`twin_processor`'s.

    Raises
    ------
    UnknownModelError
        ``name`` is not a twin.
    """
    import time

    import torch
    from transformers import GenerationConfig

    config = twin_config(name)
    started = time.perf_counter()
    model = _meta_model(config)
    materialise(model, dtype=dtype or torch.float32, device=device, seed=TWIN_SEED)
    model.generation_config = GenerationConfig(**TWIN_GENERATION_CONFIG)
    model.eval()
    processor = twin_processor(name)
    logger.info(
        "built shape twin %s on %s in %.2f s (random weights: its audio is noise)",
        name,
        device,
        time.perf_counter() - started,
        extra={"action": "twin_built"},
    )
    return model, processor


def twin_processor(name: str) -> MusicgenProcessor:
    """The processor of twin ``name``: the ``tiny`` model's, with the twin's audio channels.

    The packaged tokenizer's ids lie far below T5's 32128 and a tokenizer does not change the
    cost, so the twins need no copy of T5's.

    Raises
    ------
    UnknownModelError
        ``name`` is not a twin.
    """
    from transformers import AutoProcessor

    from dgx_music.generation.engine import TINY_MODEL_DIR

    channels = twin_config(name).decoder.audio_channels
    processor = AutoProcessor.from_pretrained(TINY_MODEL_DIR, local_files_only=True)
    # As transformers' conversion script: one feature-extractor channel per audio channel.
    processor.feature_extractor.feature_size = channels
    return processor


def materialise(
    model: torch.nn.Module, *, dtype: torch.dtype, device: str | torch.device, seed: int
) -> None:
    """Give every parameter and buffer of a meta-device MusicGen real, seeded values, in place.

    Linear and embedding weights are drawn from N(0, :data:`LINEAR_STD`); convolution and LSTM
    weights from N(0, 1/fan-in), which keeps the codec's signal level from layer to layer;
    weight-normalised convolutions get the (magnitude, direction) pair of such a weight, so
    the parametrisation holds exactly; norms are 1, biases 0; codebooks are random. Buffers
    that are pure functions of the shape (sinusoidal positions, EnCodec padding) are computed
    as transformers computes them.

    Parameters
    ----------
    model
        Built under ``torch.device("meta")``.
    dtype
        Floating-point type, except where ``from_pretrained`` would keep float32.
    device
        Where the tensors are allocated and the random numbers drawn.
    seed
        Seed of the generator every value is drawn from, in module order.

    Raises
    ------
    RuntimeError
        A parameter or buffer has no rule here (a transformers release added one): the
        message names it, so the rule can be added rather than memory left uninitialised.
    """
    import torch

    device = torch.device(device)
    generator = torch.Generator(device=device).manual_seed(seed)
    keep_fp32 = _keep_fp32_pattern(model, dtype)
    # Tied parameters (T5's shared and encoder embeddings) are one tensor in two modules: each
    # meta parameter's id maps to (that parameter, its replacement). Holding the meta parameter
    # keeps it alive, so its id cannot be reused by another tensor while the walk runs.
    done: Replacements = {}

    def draw(shape: torch.Size, std: float) -> torch.Tensor:
        # Drawn in float32 whatever ``dtype`` is, so a float16 twin is the float32 one rounded.
        values = torch.empty(shape, dtype=torch.float32, device=device)
        return values.normal_(0.0, std, generator=generator)

    def cast(qualified_name: str, values: torch.Tensor) -> torch.Tensor:
        if not values.is_floating_point():
            return values.to(device)
        wanted = torch.float32 if keep_fp32 and keep_fp32.search(qualified_name) else dtype
        return values.to(device=device, dtype=wanted)

    for module_name, module in model.named_modules():
        prefix = f"{module_name}." if module_name else ""
        for param_name, param in list(module.named_parameters(recurse=False)):
            if id(param) not in done:
                values = _parameter_values(module, param_name, param, draw)
                if values is None:
                    continue  # a weight-norm pair, set with its convolution
                done[id(param)] = (
                    param,
                    torch.nn.Parameter(
                        cast(prefix + param_name, values), requires_grad=param.requires_grad
                    ),
                )
            setattr(module, param_name, done[id(param)][1])
        if torch.nn.utils.parametrize.is_parametrized(module, "weight"):
            _set_weight_norm(module, prefix, draw, cast, done)
        for buffer_name, buffer in list(module.named_buffers(recurse=False)):
            values = _buffer_values(module, buffer_name, buffer, draw)
            setattr(module, buffer_name, cast(prefix + buffer_name, values))

    left = [
        name
        for name, tensor in [*model.named_parameters(), *model.named_buffers()]
        if tensor.is_meta
    ]
    if left:
        raise RuntimeError(f"shape twin: no values for {', '.join(left)}")


def _keep_fp32_pattern(model: torch.nn.Module, dtype: torch.dtype) -> re.Pattern[str] | None:
    """Names ``from_pretrained(dtype=dtype)`` keeps in float32, as one pattern (or ``None``)."""
    import torch

    # transformers collects the sub-models' lists when the model is built, and matches each
    # entry (a glob) anywhere in a weight's name: the same rule here gives the same dtypes.
    names: set[str] = set()
    if dtype == torch.float16:
        names |= set(getattr(model, "_keep_in_fp32_modules", None) or ())
    if dtype in (torch.float16, torch.bfloat16):
        names |= set(getattr(model, "_keep_in_fp32_modules_strict", None) or ())
    if not names:
        return None
    return re.compile("|".join(name.replace("*", ".*") for name in sorted(names)))


def _parameter_values(
    module: torch.nn.Module, name: str, param: torch.Tensor, draw: Draw
) -> torch.Tensor | None:
    """Initial float32 values of ``module``'s own parameter ``name``; ``None`` for weight norm."""
    import torch
    from transformers.models.t5.modeling_t5 import T5LayerNorm

    if name == "bias":
        return torch.zeros(param.shape, dtype=torch.float32)
    if isinstance(module, torch.nn.Linear | torch.nn.Embedding) and name == "weight":
        return draw(param.shape, LINEAR_STD)
    if isinstance(module, torch.nn.LayerNorm | T5LayerNorm) and name == "weight":
        return torch.ones(param.shape, dtype=torch.float32)
    if isinstance(module, torch.nn.LSTM):
        if name.startswith("bias_"):
            return torch.zeros(param.shape, dtype=torch.float32)
        return draw(param.shape, 1.0 / math.sqrt(module.hidden_size))
    if isinstance(module, torch.nn.utils.parametrize.ParametrizationList):
        return None
    if isinstance(module, torch.nn.Conv1d | torch.nn.ConvTranspose1d) and name == "weight":
        return draw(param.shape, 1.0 / math.sqrt(param[0].numel()))
    raise RuntimeError(
        f"shape twin: no initialisation rule for parameter {name!r} of {type(module).__name__}"
    )


def _set_weight_norm(
    module: torch.nn.Module,
    prefix: str,
    draw: Draw,
    cast: Cast,
    done: Replacements,
) -> None:
    """Draw a convolution weight and store it as weight norm's (magnitude, direction) pair."""
    import torch

    parametrization = module.parametrizations.weight
    direction = parametrization.original1
    weight = draw(direction.shape, 1.0 / math.sqrt(direction[0].numel()))
    # right_inverse is weight norm's own split of a weight into (g, v): with it, g * v / |v|
    # gives back exactly the drawn weight.
    pair = parametrization[0].right_inverse(weight)
    for index, values in enumerate(pair):
        name = f"original{index}"
        original = getattr(parametrization, name)
        replacement = torch.nn.Parameter(
            cast(f"{prefix}parametrizations.weight.{name}", values),
            requires_grad=original.requires_grad,
        )
        done[id(original)] = (original, replacement)
        setattr(parametrization, name, replacement)


def _buffer_values(
    module: torch.nn.Module, name: str, buffer: torch.Tensor, draw: Draw
) -> torch.Tensor:
    """Values of ``module``'s own buffer ``name``, as transformers' constructors compute them."""
    import torch
    from transformers.models.encodec.modeling_encodec import (
        EncodecConv1d,
        EncodecEuclideanCodebook,
    )
    from transformers.models.musicgen.modeling_musicgen import (
        MusicgenSinusoidalPositionalEmbedding,
    )

    if isinstance(module, MusicgenSinusoidalPositionalEmbedding) and name == "weights":
        return module.get_embedding(module.num_positions, module.embedding_dim)
    if isinstance(module, EncodecConv1d):
        conv = module.conv
        stride = conv.stride[0]
        kernel = (conv.kernel_size[0] - 1) * conv.dilation[0] + 1  # with dilation
        value = {"stride": stride, "kernel_size": kernel, "padding_total": kernel - stride}
        if name in value:
            return torch.tensor(value[name], dtype=torch.int64)
    if isinstance(module, EncodecEuclideanCodebook):
        if name == "inited":
            return torch.ones(buffer.shape, dtype=torch.float32)
        if name == "cluster_size":
            return torch.zeros(buffer.shape, dtype=torch.float32)
        if name == "embed":
            return draw(buffer.shape, CODEBOOK_STD)
        if name == "embed_avg":
            # embed comes first in the module's buffers and has just been set.
            return module.embed.detach().clone()
    raise RuntimeError(f"shape twin: no rule for buffer {name!r} of {type(module).__name__}")


@lru_cache(maxsize=len(TWIN_CHECKPOINTS))
def _parameter_counts(name: str) -> tuple[tuple[str, int], ...]:
    model = _meta_model(twin_config(name))

    def count(module: torch.nn.Module) -> int:
        return sum(param.numel() for param in module.parameters())

    total = count(model)
    text_encoder = count(model.text_encoder)
    audio_encoder = count(model.audio_encoder)
    return (
        ("text_encoder", text_encoder),
        ("audio_encoder", audio_encoder),
        ("decoder", total - text_encoder - audio_encoder),
        ("total", total),
    )


def parameter_counts(name: str) -> dict[str, int]:
    """Parameters of twin ``name`` (and of its checkpoint) per component, without any weights.

    Counted on the meta device, so it allocates nothing; cached per name.

    Parameters
    ----------
    name
        One of :data:`TWIN_CHECKPOINTS`.

    Returns
    -------
    dict of str to int
        ``text_encoder`` (T5-base encoder, embeddings once), ``audio_encoder`` (the EnCodec
        codec, weight norm counted as stored: magnitude and direction), ``decoder`` (the
        language model: transformer, codebook embeddings, LM heads and the projection of the
        text states into it, as audiocraft's LM holds them) and ``total``, their sum. Buffers
        (codebooks, sinusoidal positions) are not parameters and are not counted.

    Raises
    ------
    UnknownModelError
        ``name`` is not a twin.
    """
    return dict(_parameter_counts(name))
