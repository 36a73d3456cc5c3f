"""The OpenAPI document says what the API does: each operation lists every status it can answer
(none it cannot), the answers that ask for patience say when to retry, and every parameter the
schema accepts is one the code takes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.api.read_model import CURSOR_PATTERN, _decode_cursor, _encode_cursor
from service.specs import generate_documents

INT64_MAX = 2**63 - 1


@pytest.fixture(scope="module")
def openapi() -> dict[str, Any]:
    return generate_documents()["openapi.json"]


def operations(openapi: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (path, operation)
        for path, methods in openapi["paths"].items()
        for operation in methods.values()
    ]


def test_every_api_operation_documents_the_errors_any_request_can_meet(
    openapi: dict[str, Any],
) -> None:
    api = [(path, op) for path, op in operations(openapi) if path.startswith(("/v1/", "/v3/"))]
    assert len(api) == 7
    for path, operation in api:
        responses = operation["responses"]
        assert {"400", "401", "429", "500", "503"} <= set(responses), path
        assert "422" not in responses, path  # FastAPI's default; Ferry answers 400
        if "{" in path:
            assert "404" in responses, path
        else:
            assert "404" not in responses, path  # a list is never "not found"
        for status in ("429", "503"):
            assert responses[status]["headers"]["Retry-After"]["required"] is True, path
        shape = "BrevoError" if path.startswith("/v3/") else "ErrorEnvelope"
        for status, response in responses.items():
            if status.startswith(("4", "5")):
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": f"#/components/schemas/{shape}"}, (path, status)


def test_probes_document_their_failure(openapi: dict[str, Any]) -> None:
    for path in ("/healthz", "/readyz"):
        assert set(openapi["paths"][path]["get"]["responses"]) == {"200", "503"}


def test_integers_stay_within_what_mongodb_takes(openapi: dict[str, Any]) -> None:
    processes = openapi["paths"]["/v3/processes"]["get"]["parameters"]
    bounds = {p["name"]: p["schema"] for p in processes}
    # skip and skip + limit are both int64 in MongoDB.
    assert bounds["offset"]["maximum"] + bounds["limit"]["maximum"] <= INT64_MAX
    process = openapi["paths"]["/v3/processes/{processId}"]["get"]["parameters"][0]
    assert process["schema"]["maximum"] == INT64_MAX


def test_list_cursors_are_described_by_the_pattern_the_code_checks(
    openapi: dict[str, Any],
) -> None:
    for path in ("/v1/exports", "/v1/imports"):
        parameters = {p["name"]: p for p in openapi["paths"][path]["get"]["parameters"]}
        assert parameters["cursor"]["schema"]["pattern"] == CURSOR_PATTERN
        assert "anyOf" not in parameters["status"]["schema"]  # absent, never null


@given(st.from_regex(CURSOR_PATTERN, fullmatch=True))
def test_every_cursor_the_schema_accepts_is_a_position(cursor: str) -> None:
    created_at, job_id = _decode_cursor(cursor)
    assert created_at.tzinfo is not None
    assert uuid.UUID(job_id).hex == cursor.split("_")[1]


@given(
    st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(5000, 1, 1)),  # noqa: DTZ001
    st.uuids(),
    st.booleans(),
)
def test_a_cursor_leads_back_to_the_job_it_was_made_from(
    created_at: datetime, job_id: uuid.UUID, naive: bool
) -> None:
    stored = created_at if naive else created_at.replace(tzinfo=UTC)  # as MongoDB returns it
    cursor = _encode_cursor(stored, str(job_id))
    assert _decode_cursor(cursor) == (created_at.replace(tzinfo=UTC), str(job_id))
