"""The Arrow encoders write the plain encoders' bytes, whatever the documents hold.

Documents go through BSON as the exporter gets them (raw batches decoded with the database's
codec options); the plain encoders in encoders.py are the reference.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import bson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from bson.codec_options import CodecOptions
from bson.int64 import Int64
from bson.objectid import ObjectId
from bson.timestamp import Timestamp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from pymongo.asynchronous.cursor import AsyncRawBatchCursor
from pymongo.message import _OpMsg

from service.datasets import get_dataset
from service.datasets.base import Column
from service.errors import JobFailedError
from service.exports.arrow_batches import RowBatch, decode_batch, kind_of
from service.exports.arrow_encoders import ArrowCsvEncoder, ArrowJsonLinesEncoder
from service.exports.batch_decoder import BatchDecoder
from service.exports.column_types import column_type
from service.exports.encoders import CsvEncoder, JsonLinesEncoder
from service.exports.parquet_writer import ParquetEncoder
from service.exports.raw_cursor import RawBatchCursor

CODEC: CodecOptions[dict[str, Any]] = CodecOptions(tz_aware=True, tzinfo=UTC)
MESSAGES = get_dataset("messages")
CONTACTS = get_dataset("contacts")
CONTACT_COLUMNS = CONTACTS.select_columns(
    [*(column.name for column in CONTACTS.columns), "FIRSTNAME", "SCORE"]
)
# Each name once, as an export's columns are.
ALL_COLUMNS = tuple(
    {column.name: column for column in (*MESSAGES.columns, *CONTACT_COLUMNS)}.values()
)

RECORD_MODELS: dict[tuple[Column, ...], type[BaseModel]] = {
    MESSAGES.columns: MESSAGES.record_model,
    MESSAGES.columns[:1]: MESSAGES.record_model,
    CONTACT_COLUMNS: CONTACTS.record_model,
    CONTACT_COLUMNS[-1:]: CONTACTS.record_model,
}


class Untyped(BaseModel):
    """No field typed: every column a string to the fast decoder."""


ANY_MODEL = Untyped


def raw(documents: list[dict[str, Any]]) -> bytes:
    return b"".join(bson.encode(document) for document in documents)


def batches(documents: list[dict[str, Any]], columns: tuple[Column, ...], size: int) -> list[Any]:
    """The exporter's decoding: the fast decoder where it is exact (messages' flat columns),
    else the exact one."""
    decoder = BatchDecoder(columns, RECORD_MODELS.get(columns, ANY_MODEL), ["_id"], CODEC)
    return [
        decoder.decode(raw(documents[start : start + size]))
        for start in range(0, len(documents), size)
    ]


def plain_csv(documents: list[dict[str, Any]], columns: tuple[Column, ...], size: int) -> bytes:
    encoder = CsvEncoder(columns, escape_formulas=True)
    decoded = bson.decode_all(raw(documents), CODEC)
    chunks = [
        encoder.encode(decoded[start : start + size]) for start in range(0, len(decoded), size)
    ]
    return encoder.header() + b"".join(chunks)


def arrow_csv(documents: list[dict[str, Any]], columns: tuple[Column, ...], size: int) -> bytes:
    encoder = ArrowCsvEncoder(columns, escape_formulas=True)
    body = b"".join(encoder.encode(batch) for batch in batches(documents, columns, size))
    return encoder.header() + body + encoder.finish()


def plain_jsonl(documents: list[dict[str, Any]], columns: tuple[Column, ...], size: int) -> bytes:
    encoder = JsonLinesEncoder(columns)
    decoded = bson.decode_all(raw(documents), CODEC)
    return b"".join(
        encoder.encode(decoded[start : start + size]) for start in range(0, len(decoded), size)
    )


def arrow_jsonl(documents: list[dict[str, Any]], columns: tuple[Column, ...], size: int) -> bytes:
    encoder = ArrowJsonLinesEncoder(columns)
    return b"".join(encoder.encode(batch) for batch in batches(documents, columns, size))


# Values a schemaless collection may hold in any field -------------------------------------------

FORMULA_TEXT = st.sampled_from(
    ["=1+2", "+x", "-3", "@SUM(A1)", "\tx", "\rx", "'q", "a,b", 'say "hi"']
)
TEXT = st.one_of(st.text(max_size=12), FORMULA_TEXT, st.sampled_from(["", " ", "é€😀", "a\nb"]))
DATETIMES = st.datetimes(
    # Hypothesis takes naive bounds and adds the zone.
    min_value=datetime(1, 1, 1),  # noqa: DTZ001
    max_value=datetime(9999, 12, 31),  # noqa: DTZ001
    timezones=st.just(UTC),
).map(lambda value: value.replace(microsecond=value.microsecond // 1000 * 1000))
SCALARS = st.one_of(
    st.none(),
    TEXT,
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.integers(min_value=-5, max_value=5),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    DATETIMES,
)
LISTS = st.one_of(
    st.lists(st.integers(min_value=-(2**63), max_value=2**63 - 1), max_size=4),
    st.lists(TEXT, max_size=3),
    st.lists(SCALARS, max_size=3),
)
VALUES = st.one_of(
    SCALARS, LISTS, st.dictionaries(st.sampled_from(["a", "b"]), SCALARS, max_size=2)
)
# A column's values are often all of one type (the fast path), sometimes anything (the fallback).
HOMOGENEOUS = [
    TEXT,
    DATETIMES,
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.booleans(),
    st.lists(st.integers(min_value=-(2**63), max_value=2**63 - 1), max_size=4),
    st.lists(TEXT, max_size=3),
]
FIELD_NAMES = sorted({column.field.split(".")[0] for column in ALL_COLUMNS} - {"_id", "attributes"})


@st.composite
def documents(draw: st.DrawFn) -> list[dict[str, Any]]:
    typed = {
        name: draw(st.sampled_from([*HOMOGENEOUS, SCALARS, LISTS, VALUES])) for name in FIELD_NAMES
    }
    count = draw(st.integers(min_value=0, max_value=12))
    result = []
    for index in range(count):
        document: dict[str, Any] = {"_id": draw(st.one_of(st.just(f"id-{index}"), TEXT))}
        for name in FIELD_NAMES:
            if draw(st.booleans()):
                document[name] = draw(typed[name])
        attributes = draw(
            st.one_of(
                st.none(),
                st.dictionaries(st.sampled_from(["FIRSTNAME", "SCORE", "X"]), VALUES, max_size=3),
                TEXT,
            )
        )
        if attributes is not None:
            document["attributes"] = attributes
        result.append(document)
    return result


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents(), st.integers(min_value=1, max_value=5))
def test_csv_is_byte_for_byte_the_plain_csv(docs: list[dict[str, Any]], size: int) -> None:
    for columns in (ALL_COLUMNS, MESSAGES.columns[:1], CONTACT_COLUMNS[-1:]):
        assert arrow_csv(docs, columns, size) == plain_csv(docs, columns, size)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents(), st.integers(min_value=1, max_value=5))
def test_json_lines_are_byte_for_byte_the_plain_json_lines(
    docs: list[dict[str, Any]], size: int
) -> None:
    for columns in (ALL_COLUMNS, MESSAGES.columns[:1]):
        assert arrow_jsonl(docs, columns, size) == plain_jsonl(docs, columns, size)


def declared(name: str) -> st.SearchStrategy[Any]:
    """Values of a messages field's declared type, and now and then anything at all."""
    typed: dict[str, st.SearchStrategy[Any]] = {
        "attempt_count": st.integers(min_value=-(2**63), max_value=2**63 - 1),
        "last_response_status": st.integers(min_value=100, max_value=599),
        "created_at": DATETIMES,
        "delivered_at": DATETIMES,
    }
    return st.one_of(st.none(), typed.get(name, TEXT))


@st.composite
def messages(draw: st.DrawFn) -> list[dict[str, Any]]:
    odd = draw(st.sampled_from([None, *(column.field for column in MESSAGES.columns)]))
    result = []
    for index in range(draw(st.integers(min_value=0, max_value=10))):
        document: dict[str, Any] = {}
        for column in MESSAGES.columns:
            if column.field == "_id":
                document["_id"] = f"m-{index}"
            elif draw(st.integers(min_value=0, max_value=9)):
                strategy = VALUES if column.field == odd else declared(column.field)
                document[column.field] = draw(strategy)
        result.append(document)
    return result


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages(), st.integers(min_value=1, max_value=4))
def test_messages_mostly_as_declared_are_byte_for_byte_the_plain_files(
    docs: list[dict[str, Any]], size: int
) -> None:
    # Mostly the fast decoder; one field may hold anything, which must send a batch to the exact
    # one (a double in an int64 column, a bool, a list...) rather than change a value.
    columns = MESSAGES.columns
    assert arrow_csv(docs, columns, size) == plain_csv(docs, columns, size)
    assert arrow_jsonl(docs, columns, size) == plain_jsonl(docs, columns, size)


def test_the_fast_decoder_refuses_values_it_would_coerce() -> None:
    decoder = BatchDecoder(MESSAGES.columns, MESSAGES.record_model, ["_id"], CODEC)
    assert decoder.fast
    clean = decoder.decode(raw([{"_id": "a", "attempt_count": 2}, {"_id": "b"}]))
    assert clean.columns[6].decoded is None  # built by pymongoarrow, no Python values
    assert clean.columns[6].values == [2, None]
    for odd in (2.5, 2.0, True, "two", [2]):
        batch = decoder.decode(raw([{"_id": "a", "attempt_count": odd}, {"_id": "b"}]))
        assert batch.columns[6].values == [odd, None]
        assert batch.columns[6].decoded is not None  # the exact decoder's
    assert not BatchDecoder(CONTACT_COLUMNS, CONTACTS.record_model, ["_id"], CODEC).fast


def test_a_realistic_batch_takes_the_fast_path_and_matches() -> None:
    start = datetime(2025, 12, 6, 12, 0, tzinfo=UTC)
    docs = [
        {
            "_id": f"m-{index}",
            "direction": "outbound",
            "endpoint_id": None if index % 3 else f"ep-{index}",
            "status": "succeeded",
            "event_type": "=cmd|' /C calc'!A0" if index == 2 else "order.created",
            "attempt_count": index,
            "last_response_status": 200 if index % 2 else None,
            "last_error": 'timeout, "retry"\r\nlater' if index == 1 else None,
            "created_at": start + timedelta(milliseconds=index * 250),
        }
        for index in range(20)
    ]
    (batch,) = batches(docs, MESSAGES.columns, 100)
    assert all(column.decoded is None for column in batch.columns)  # the fast decoder's
    kinds = {column.column.name: column.kind for column in batch.columns}
    assert kinds["id"] == "string"
    assert kinds["attempt_count"] == "int"
    assert kinds["created_at"] == "datetime"
    assert kinds["delivered_at"] == "datetime"  # typed by the schema, every value null
    assert "mixed" not in kinds.values()
    csv_bytes = arrow_csv(docs, MESSAGES.columns, 7)
    assert csv_bytes == plain_csv(docs, MESSAGES.columns, 7)
    assert b"2025-12-06T12:00:00.250Z" in csv_bytes
    assert b"2025-12-06T12:00:00Z" in csv_bytes
    assert b"'=cmd" in csv_bytes
    assert arrow_jsonl(docs, MESSAGES.columns, 7) == plain_jsonl(docs, MESSAGES.columns, 7)


def test_batches_carry_their_row_count_and_last_sort_key() -> None:
    docs = [
        {"_id": f"m-{index}", "created_at": datetime(2025, 1, 1, tzinfo=UTC)} for index in range(5)
    ]
    batch = decode_batch(raw(docs), MESSAGES.columns, ["created_at", "_id"], CODEC)
    assert isinstance(batch, RowBatch)
    assert batch.row_count == 5
    assert batch.last_sort_key == (datetime(2025, 1, 1, tzinfo=UTC), "m-4")
    assert batch.last_document["_id"] == "m-4"


def test_object_ids_are_written_as_the_plain_path_writes_them() -> None:
    docs: list[dict[str, Any]] = [{"_id": ObjectId()}, {"_id": "text"}]
    assert arrow_csv(docs, MESSAGES.columns[:1], 10) == plain_csv(docs, MESSAGES.columns[:1], 10)
    with pytest.raises(TypeError, match="ObjectId"):
        plain_jsonl(docs, MESSAGES.columns[:1], 10)
    with pytest.raises(TypeError, match="ObjectId"):
        arrow_jsonl(docs, MESSAGES.columns[:1], 10)


def test_kinds_are_exact_types() -> None:
    assert kind_of([1, None, 2]) == "int"
    assert kind_of([1, True]) == "mixed"
    assert kind_of([1, 1.5]) == "mixed"
    assert kind_of([[1, 2], [], None]) == "int_list"
    assert kind_of([[1, "a"]]) == "mixed"
    assert kind_of([None, None]) == "null"


# Parquet ---------------------------------------------------------------------------------------


def parquet(
    docs: list[dict[str, Any]], columns: tuple[Column, ...], record_model: Any, size: int
) -> bytes:
    encoder = ParquetEncoder(columns, record_model)
    out = io.BytesIO()
    out.write(encoder.header())
    for batch in batches(docs, columns, size):
        out.write(encoder.encode(batch))
    out.write(encoder.finish())
    return out.getvalue()


def test_parquet_has_typed_columns_one_row_group_per_batch() -> None:
    start = datetime(2025, 12, 6, 12, 0, tzinfo=UTC)
    docs = [
        {
            "_id": f"m-{index}",
            "direction": "outbound",
            "status": "succeeded",
            "event_type": "=x",
            "attempt_count": index,
            "created_at": start + timedelta(seconds=index),
        }
        for index in range(10)
    ]
    data = parquet(docs, MESSAGES.columns, MESSAGES.record_model, 4)
    file = pq.ParquetFile(io.BytesIO(data))
    assert file.metadata.num_row_groups == 3
    assert file.metadata.row_group(0).column(0).compression == "ZSTD"
    table = file.read()
    assert table.schema.field("id").type == pa.string()
    assert table.schema.field("attempt_count").type == pa.int64()
    assert table.schema.field("created_at").type == pa.timestamp("ms", tz="UTC")
    assert table.column("attempt_count").to_pylist() == list(range(10))
    assert table.column("created_at").to_pylist()[3] == start + timedelta(seconds=3)
    assert table.column("event_type").to_pylist()[0] == "=x"  # no spreadsheet escaping
    assert table.column("delivered_at").null_count == 10


def test_parquet_keeps_mixed_free_form_values_as_text() -> None:
    docs = [
        {
            "_id": "a",
            "contact_id": 1,
            "list_ids": [1, 2],
            "attributes": {"FIRSTNAME": "Ann", "SCORE": 5},
        },
        {"_id": "b", "contact_id": 2, "attributes": {"FIRSTNAME": 7, "SCORE": {"x": [1, True]}}},
        {"_id": "c", "contact_id": 3, "attributes": {"SCORE": datetime(2025, 1, 2, tzinfo=UTC)}},
        {"_id": "d", "contact_id": 4, "attributes": "not an object"},
    ]
    table = pq.read_table(io.BytesIO(parquet(docs, CONTACT_COLUMNS, CONTACTS.record_model, 2)))
    assert table.schema.field("contact_id").type == pa.int64()
    assert table.schema.field("list_ids").type == pa.list_(pa.int64())
    assert table.schema.field("email_blacklisted").type == pa.bool_()
    assert table.schema.field("FIRSTNAME").type == pa.string()
    assert table.column("FIRSTNAME").to_pylist() == ["Ann", "7", None, None]
    assert table.column("SCORE").to_pylist() == [
        "5",
        '{"x":[1,true]}',
        "2025-01-02T00:00:00Z",
        None,
    ]
    assert table.column("list_ids").to_pylist() == [[1, 2], None, None, None]


def test_parquet_refuses_a_value_that_does_not_fit_a_typed_column() -> None:
    docs: list[dict[str, Any]] = [
        {"_id": "a", "attempt_count": 1},
        {"_id": "doc-7", "attempt_count": "three"},
    ]
    with pytest.raises(JobFailedError, match="attempt_count") as caught:
        parquet(docs, MESSAGES.columns, MESSAGES.record_model, 10)
    assert caught.value.code == "UNSUPPORTED_VALUE"
    assert "doc-7" in caught.value.message


def test_column_types_come_from_the_record_model() -> None:
    assert column_type(MESSAGES.record_model, "_id") == pa.string()
    assert column_type(MESSAGES.record_model, "last_response_status") == pa.int64()
    assert column_type(CONTACTS.record_model, "attributes.FIRSTNAME") == pa.string()
    assert column_type(CONTACTS.record_model, "nowhere") == pa.string()


def test_json_lines_output_parses_with_the_declared_types() -> None:
    docs = [{"_id": "x", "attempt_count": 3, "created_at": datetime(2025, 1, 1, tzinfo=UTC)}]
    (line,) = arrow_jsonl(docs, MESSAGES.columns, 1).decode().splitlines()
    assert json.loads(line)["attempt_count"] == 3


def test_an_empty_parquet_export_is_a_valid_file_with_the_schema() -> None:
    table = pq.read_table(io.BytesIO(parquet([], MESSAGES.columns, MESSAGES.record_model, 10)))
    assert table.num_rows == 0
    assert table.column_names == [column.name for column in MESSAGES.columns]


@pytest.mark.parametrize("key", ["firstBatch", "nextBatch"])
@pytest.mark.parametrize("count", [0, 1, 3])
def test_the_raw_batch_cursor_unpacks_replies_as_pymongo_does(key: str, count: int) -> None:
    documents = [
        {"_id": f"m-{n}", "n": n, "at": datetime(2025, 1, 1, tzinfo=UTC)} for n in range(count)
    ]
    reply = {
        "cursor": {key: documents, "id": Int64(7), "ns": "db.messages"},
        "ok": 1.0,
        "$clusterTime": {"clusterTime": Timestamp(1, 2)},
    }
    response = _OpMsg(0, bson.encode(reply))
    fields = {"cursor": {"firstBatch": 1, "nextBatch": 1}}
    codec: CodecOptions[Mapping[str, Any]] = CodecOptions(tz_aware=True, tzinfo=UTC)
    ours = RawBatchCursor._unpack_response(
        object.__new__(RawBatchCursor), response, None, codec, fields
    )
    theirs = AsyncRawBatchCursor._unpack_response(
        object.__new__(AsyncRawBatchCursor), response, None, codec, fields
    )
    assert ours == theirs
    assert ours[0]["cursor"]["id"] == 7
    batch = ours[0]["cursor"][key]
    assert bson.decode_all(batch[0], CODEC) == documents if count else batch == []
