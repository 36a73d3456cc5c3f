"""The Arrow export path against real MongoDB and S3, next to the plain path on the same rows.

Schemaless documents (a field holding a string here, a number, a list, an object or nothing
there), nested attributes, formula-like strings, datetimes, unicode: the exporter's file is byte
for byte what the plain encoders write from a plain `find()`.
"""

from __future__ import annotations

import gzip
import io
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from service.database import Database
from service.datasets import get_dataset
from service.errors import JobFailedError
from service.exports.encoders import make_encoder
from service.exports.exporter import Exporter
from service.jobs.ledger import Ledger
from service.storage import ObjectStore
from tests.integration.conftest import new_job
from tests.integration.test_exporter import PART, claimed

pytestmark = pytest.mark.integration

START = datetime(2025, 12, 1, tzinfo=UTC)
WINDOW = {"start_time": "2025-12-01T00:00:00Z", "end_time": "2025-12-02T00:00:00Z"}
ODD_VALUES: list[Any] = [
    "=HYPERLINK(1)",
    7,
    2**40,
    1.5,
    True,
    None,
    [1, 2, 3],
    ["a", "b,c"],
    {"nested": ["x", 1]},
    "naïve · 東京 😀",
    'quote " and, comma\r\nnewline',
    START + timedelta(milliseconds=1),
]


async def seed_messages(database: Database, project: str, rows: int) -> None:
    docs = []
    for n in range(rows):
        doc: dict[str, Any] = {
            "_id": f"{project}-{n:05d}",
            "project_id": project,
            "direction": "outbound",
            "status": "succeeded",
            "event_type": "-order" if n % 5 == 0 else "order.created",
            "attempt_count": n % 4,
            "created_at": START + timedelta(seconds=n, milliseconds=n % 3 * 7),
        }
        if n % 2:
            doc["delivered_at"] = START + timedelta(seconds=n + 1)
        if n >= rows // 2:
            # The second half is schemaless: every column sees every kind of value.
            for index, column in enumerate(("last_error", "endpoint_id", "last_response_status")):
                doc[column] = ODD_VALUES[(n + index) % len(ODD_VALUES)]
        docs.append(doc)
    await database["messages"].insert_many(docs)


async def plain_file(
    database: Database, project: str, export_format: Any, dataset_name: str = "messages"
) -> bytes:
    """What the plain path writes: a `find()` of dicts through encoders.py."""
    dataset = get_dataset(dataset_name)
    columns = dataset.columns
    filters = dataset.parse_filters(WINDOW if dataset_name == "messages" else {})
    encoder = make_encoder(export_format, columns, escape_formulas=True)
    cursor = (
        database[dataset.collection]
        .find(dataset.query(project, filters), {column.field: 1 for column in columns})
        .sort(list(dataset.sort))
    )
    rows = await cursor.to_list(None)
    return encoder.header() + b"".join(
        encoder.encode(rows[start : start + 37]) for start in range(0, len(rows), 37)
    )


@pytest.mark.parametrize(("export_format", "compression"), [("csv", "gzip"), ("jsonl", "none")])
async def test_mixed_type_documents_export_byte_for_byte_as_the_plain_path(
    database: Database, store: ObjectStore, ledger: Ledger, export_format: str, compression: str
) -> None:
    project = f"p{uuid.uuid4().hex[:8]}"
    await seed_messages(database, project, rows=300)
    job = new_job(project, filters=WINDOW, format=export_format, compression=compression)
    exporter = Exporter(database, store, batch_size=64, part_size=PART, escape_formulas=True)
    result = await exporter.run(job, await claimed(ledger, job))
    stored = await store.read(result.object_key)
    body = gzip.decompress(stored) if compression == "gzip" else stored
    assert result.row_count == 300
    assert body == await plain_file(database, project, export_format)
    assert "東京".encode() in body


async def test_contacts_with_nested_attributes_export_as_the_plain_path(
    database: Database, store: ObjectStore, ledger: Ledger
) -> None:
    project = f"p{uuid.uuid4().hex[:8]}"
    contacts = []
    for n in range(120):
        contact: dict[str, Any] = {
            "project_id": project,
            "contact_id": n + 1,
            "email": f"c{n}@example.test",
            "list_ids": [1, n] if n % 3 else [],
            "email_blacklisted": n % 7 == 0,
            "created_at": START,
            "modified_at": START + timedelta(minutes=n),
            "attributes": {"FIRSTNAME": "+Ann" if n % 2 else ODD_VALUES[n % len(ODD_VALUES)]},
        }
        if n % 10 == 0:
            contact["attributes"] = "not an object"
        contacts.append(contact)
    await database["contacts"].insert_many(contacts)
    dataset = get_dataset("contacts")
    columns = ["contact_id", "email", "list_ids", "email_blacklisted", "modified_at", "FIRSTNAME"]
    job = new_job(project, dataset="contacts", filters={}, format="csv", columns=columns)
    exporter = Exporter(database, store, batch_size=50, part_size=PART, escape_formulas=True)
    result = await exporter.run(job, await claimed(ledger, job))
    body = await store.read(result.object_key)

    selected = dataset.select_columns(columns)
    encoder = make_encoder("csv", selected, escape_formulas=True)
    rows = (
        await database["contacts"]
        .find({"project_id": project}, {column.field: 1 for column in selected})
        .sort("contact_id")
        .to_list(None)
    )
    assert body == encoder.header() + encoder.encode(rows)
    assert b"'+Ann" in body


async def test_parquet_export_opens_in_pyarrow_with_typed_columns(
    database: Database, store: ObjectStore, ledger: Ledger
) -> None:
    project = f"p{uuid.uuid4().hex[:8]}"
    await seed_messages(database, project, rows=100)  # the first half only: typed values
    columns = ["id", "event_type", "attempt_count", "created_at", "delivered_at"]
    job = new_job(
        project,
        filters={**WINDOW, "end_time": "2025-12-01T00:00:50Z"},
        format="parquet",
        columns=columns,
    )
    exporter = Exporter(database, store, batch_size=16, part_size=PART, escape_formulas=True)
    result = await exporter.run(job, await claimed(ledger, job))
    assert result.object_key.endswith(f"{job.id}.parquet")
    data = await store.read(result.object_key)
    assert len(data) == result.file_size_bytes
    file = pq.ParquetFile(io.BytesIO(data))
    assert file.metadata.num_row_groups == 4  # 50 rows in batches of 16
    table = file.read()
    assert table.column_names == columns
    assert table.schema.field("attempt_count").type == pa.int64()
    assert table.schema.field("created_at").type == pa.timestamp("ms", tz="UTC")
    assert table.column("id").to_pylist() == [f"{project}-{n:05d}" for n in range(50)]
    assert table.column("attempt_count").to_pylist() == [n % 4 for n in range(50)]
    assert table.column("event_type").to_pylist()[0] == "-order"  # no spreadsheet escaping
    assert table.column("created_at").to_pylist()[4] == START + timedelta(seconds=4, milliseconds=7)
    assert table.column("delivered_at").to_pylist()[:2] == [None, START + timedelta(seconds=2)]


async def test_parquet_fails_the_job_naming_a_value_that_does_not_fit(
    database: Database, store: ObjectStore, ledger: Ledger
) -> None:
    project = f"p{uuid.uuid4().hex[:8]}"
    await seed_messages(database, project, rows=300)  # last_response_status holds text too
    job = new_job(project, filters=WINDOW, format="parquet")
    exporter = Exporter(database, store, batch_size=64, part_size=PART, escape_formulas=True)
    with pytest.raises(JobFailedError, match="last_response_status") as caught:
        await exporter.run(job, await claimed(ledger, job))
    assert caught.value.code == "UNSUPPORTED_VALUE"
    assert project in caught.value.message  # the document's id
    assert await store.size(f"exports/{project}/{job.id}.parquet") is None
