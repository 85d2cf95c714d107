"""GenerationRequest validation: every field, every limit, named in the error."""

from __future__ import annotations

import math

import pytest

from dgx_music.config import get_settings
from dgx_music.errors import ValidationError
from dgx_music.generation.request import GenerationRequest, GenerationResult


def make(**overrides: object) -> GenerationRequest:
    fields: dict[str, object] = {"prompt": "lofi beat", "duration": 8.0, "model": "synth"}
    fields.update(overrides)
    return GenerationRequest(**fields)  # type: ignore[arg-type]


def test_valid_request_keeps_its_values():
    request = make(seed=7, temperature=0.8, top_k=50, top_p=0.9, guidance_scale=1.0)
    assert request.to_dict() == {
        "prompt": "lofi beat",
        "duration": 8.0,
        "model": "synth",
        "seed": 7,
        "temperature": 0.8,
        "top_k": 50,
        "top_p": 0.9,
        "guidance_scale": 1.0,
        "continue_from": None,
    }


@pytest.mark.parametrize(
    "prompt",
    [
        "a \"quoted\" 'tune' with emoji 🎸🥁 and <tags> & ; DROP TABLE",
        "日本語のプロンプト, çà et là",
        "x",
        "y" * 1000,
    ],
)
def test_any_unicode_prompt_is_kept_verbatim(prompt: str):
    assert make(prompt=prompt).prompt == prompt


def test_prompt_is_stripped():
    assert make(prompt="  \n jazz \t ").prompt == "jazz"


@pytest.mark.parametrize(
    ("overrides", "field", "fragment"),
    [
        ({"prompt": ""}, "prompt", "must not be empty"),
        ({"prompt": "   \n"}, "prompt", "must not be empty"),
        ({"prompt": "z" * 1001}, "prompt", "the limit is 1000"),
        ({"prompt": "nul\x00byte"}, "prompt", "NUL"),
        ({"prompt": "lone \ud800 surrogate"}, "prompt", "surrogate"),
        ({"prompt": 12}, "prompt", "must be text"),
        ({"duration": -1.0}, "duration", "at most 300 seconds"),
        ({"duration": 0}, "duration", "greater than 0"),
        ({"duration": 300.5}, "duration", "at most 300 seconds"),
        ({"duration": math.nan}, "duration", "finite"),
        ({"duration": "8"}, "duration", "must be a number"),
        ({"duration": True}, "duration", "must be a number"),
        ({"seed": -1}, "seed", "between 0 and"),
        ({"seed": 2**32}, "seed", "between 0 and"),
        ({"seed": 1.5}, "seed", "integer"),
        ({"temperature": 0}, "temperature", "greater than 0"),
        ({"top_k": -1}, "top_k", "from 0 to"),
        ({"top_k": 2**31}, "top_k", "from 0 to 2147483647"),
        ({"top_p": 1.5}, "top_p", "between 0 and 1"),
        ({"guidance_scale": 0.5}, "guidance_scale", "at least 1"),
        ({"model": None}, "model", "must be text"),
    ],
)
def test_bad_fields_name_the_field_and_the_limit(overrides, field, fragment):
    with pytest.raises(ValidationError) as caught:
        make(**overrides)
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ")
    assert fragment in str(caught.value)


def test_duration_limit_comes_from_settings(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("DGX_MUSIC_MAX_DURATION", "60")
    get_settings.cache_clear()
    assert make(duration=45).duration == 45.0
    with pytest.raises(ValidationError, match="at most 60 seconds"):
        make(duration=61)


def test_empty_model_means_the_default(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("DGX_MUSIC_DEFAULT_MODEL", "tiny")
    get_settings.cache_clear()
    assert make(model="").model == "tiny"


def test_result_reports_duration_and_realtime_factor():
    import numpy as np

    result = GenerationResult(
        audio=np.zeros((2, 64_000), dtype=np.float32),
        sample_rate=32_000,
        model="synth",
        device="cpu",
        seed=1,
        generation_seconds=1.0,
    )
    assert result.duration == 2.0
    assert result.realtime_factor == 0.5


def test_continue_from_is_a_generation_id():
    same = "3F2504E0-4F89-41D3-9A0C-0305E82C3301"
    assert make(continue_from=f" {same} ").continue_from == same.lower()
    for bad in ("", "abc", "3f2504e0-4f89", 42):
        with pytest.raises(ValidationError) as raised:
            make(continue_from=bad)
        assert raised.value.field == "continue_from"
