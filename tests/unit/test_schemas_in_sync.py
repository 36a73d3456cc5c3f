"""schemas/ is what the code generates: the published contract cannot drift."""

from __future__ import annotations

import json
from pathlib import Path

from service.contracts.envelope import (
    EXPORT_REQUESTED,
    IMPORT_REQUESTED,
    JOB_STATUS_CHANGED,
    JOB_UPDATED,
)
from service.specs import generate_documents, readme_with_settings, stale_documents

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


def test_committed_schemas_match_the_code() -> None:
    assert stale_documents(SCHEMAS) == [], "run `make schemas` and commit schemas/"


def test_there_is_a_schema_per_event_type_and_the_api_documents() -> None:
    documents = generate_documents()
    for event_type in (EXPORT_REQUESTED, IMPORT_REQUESTED, JOB_STATUS_CHANGED, JOB_UPDATED):
        assert f"events/{event_type}.json" in documents
    asyncapi = documents["asyncapi.json"]
    assert asyncapi["asyncapi"] == "3.0.0"
    assert {c["address"] for c in asyncapi["channels"].values()} == {
        "ferry.requests",
        "ferry.status",
        "ferry.requests.dlq",
    }
    paths = documents["openapi.json"]["paths"]
    assert {
        "/v1/exports",
        "/v1/exports/{export_id}",
        "/v1/exports/{export_id}/download",
        "/v1/imports",
        "/v1/imports/{import_id}",
        "/v3/processes",
        "/v3/processes/{processId}",
    } <= set(paths)
    requests = asyncapi["channels"]["requests"]["messages"]
    assert {"ExportRequested", "ImportRequested", "CancelRequested"} == set(requests)


def test_every_asyncapi_reference_resolves() -> None:
    document = generate_documents()["asyncapi.json"]
    text = json.dumps(document)
    for ref in {part.split('"')[0] for part in text.split('"$ref": "#/')[1:]}:
        node = document
        for key in ref.split("/"):
            assert key in node, f"dangling reference #/{ref}"
            node = node[key]


def test_readme_settings_table_matches_the_code() -> None:
    readme = (SCHEMAS.parent / "README.md").read_text()
    assert readme_with_settings(readme) == readme, "run `make schemas` and commit README.md"
    for name in (
        "FERRY_KAFKA__BOOTSTRAP_SERVERS",
        "FERRY_S3__ACCESS_KEY",
        "FERRY_WORKER__LEASE_SECONDS",
    ):
        assert f"`{name}`" in readme


def test_readme_opens_with_the_two_commands() -> None:
    readme = (SCHEMAS.parent / "README.md").read_text()
    commands = [line.split("#")[0].strip() for line in readme.split("```")[1].splitlines()[1:]]
    assert [command for command in commands if command] == ["make run", "make test"]
