"""Property-based fuzzing of the API from its own OpenAPI schema: no input gives a 5xx.

Schemathesis generates valid and invalid requests (wrong types, out-of-range values, odd
Unicode, missing fields) for every operation and checks each response against the schema:
documented status code, content type and body. Bounded and deterministic: a fixed number of
examples per operation, derived from the schema rather than from a random seed.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from dgx_music.api import create_app
from dgx_music.api.config import ApiSettings
from dgx_music.config import get_settings
from tests.api.helpers import API, synth_body

#: Examples per operation in the fuzzing phase.
MAX_EXAMPLES = 30


@pytest.fixture
def fuzz_app(database: Any) -> Iterator[Any]:
    """The application over an empty database of each backend, with one pending job in it."""
    app = create_app(get_settings(), start_workers=False, api_settings=ApiSettings())
    with TestClient(app) as client:
        # Something to find: id-based routes meet a real row too when an example uses its id.
        assert client.post(f"{API}/generations", json=synth_body()).status_code == 202
        yield app


# The schema is read once at import (building the app touches no database); requests go to
# the fixture's application. (schemathesis.pytest.from_fixture does not work with pytest 9.)
schema = schemathesis.openapi.from_dict(
    create_app(start_workers=False, api_settings=ApiSettings()).openapi()
)
schema.config.generation.update(max_examples=MAX_EXAMPLES, deterministic=True)


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_api_never_answers_5xx(case: Any, fuzz_app: Any) -> None:
    case.call_and_validate(
        app=fuzz_app,
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
    )
