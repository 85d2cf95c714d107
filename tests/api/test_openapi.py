"""The OpenAPI schema: every route, its errors, examples and the security scheme."""

from __future__ import annotations

from typing import Any

import pytest

from dgx_music.api import create_app
from dgx_music.api.config import ApiSettings

ERROR_REF = "#/components/schemas/ErrorPublic"


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return create_app(start_workers=False, api_settings=ApiSettings()).openapi()


def error_ref(operation: dict[str, Any], status: str) -> str:
    return operation["responses"][status]["content"]["application/json"]["schema"]["$ref"]


def test_every_route_is_documented(schema: dict[str, Any]) -> None:
    routes = {
        (method, path) for path, operations in schema["paths"].items() for method in operations
    }
    assert routes == {
        ("post", "/api/v1/generations"),
        ("get", "/api/v1/generations"),
        ("get", "/api/v1/generations/{generation_id}"),
        ("delete", "/api/v1/generations/{generation_id}"),
        ("get", "/api/v1/generations/{generation_id}/audio"),
        ("get", "/api/v1/generations/{generation_id}/waveform"),
        ("get", "/api/v1/models"),
        ("get", "/api/v1/info"),
        ("get", "/api/v1/health"),
        ("get", "/api/v1/metrics"),
    }
    for operations in schema["paths"].values():
        for operation in operations.values():
            assert operation.get("summary") and operation.get("description")


def test_errors_use_the_one_error_model(schema: dict[str, Any]) -> None:
    paths = schema["paths"]
    submit = paths["/api/v1/generations"]["post"]
    for status in ("401", "413", "422", "503"):
        assert error_ref(submit, status) == ERROR_REF
    for method in ("get", "delete"):
        one = paths["/api/v1/generations/{generation_id}"][method]
        assert error_ref(one, "404") == ERROR_REF
        assert error_ref(one, "422") == ERROR_REF
    assert error_ref(paths["/api/v1/generations/{generation_id}"]["delete"], "409") == ERROR_REF
    assert "HTTPValidationError" not in schema["components"]["schemas"]


def test_submission_is_documented_with_examples_and_limits(schema: dict[str, Any]) -> None:
    submit = schema["paths"]["/api/v1/generations"]["post"]
    assert "Location" in submit["responses"]["202"]["headers"]
    create = schema["components"]["schemas"]["GenerationCreate"]
    assert create["required"] == ["prompt", "duration"]
    assert create["additionalProperties"] is False
    assert create["examples"][0]["prompt"]
    assert create["properties"]["prompt"]["maxLength"] == 1000
    assert create["properties"]["duration"]["maximum"] == 300
    assert create["properties"]["duration"]["exclusiveMinimum"] == 0
    assert schema["components"]["schemas"]["ErrorPublic"]["examples"]
    assert schema["components"]["schemas"]["GenerationPublic"]["examples"]


def test_audio_and_auth_are_documented(schema: dict[str, Any]) -> None:
    audio = schema["paths"]["/api/v1/generations/{generation_id}/audio"]["get"]
    assert "audio/wav" in audio["responses"]["200"]["content"]
    assert {"200", "206", "304", "416", "401", "404", "409"} <= set(audio["responses"])
    scheme = schema["components"]["securitySchemes"]["ApiKey"]
    assert scheme == {**scheme, "type": "http", "scheme": "bearer"}
    assert {"ApiKey": []} in schema["paths"]["/api/v1/generations"]["post"]["security"]
    assert "security" not in schema["paths"]["/api/v1/generations"]["get"]
