"""Records no single one of which may stop the intake: Hypothesis strategies for the property
tests, and a seeded corpus of the known poisons for the scenarios against real servers."""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from service.contracts.envelope import CANCEL_REQUESTED, EXPORT_REQUESTED, IMPORT_REQUESTED

FILTERS = {"start_time": "2025-12-01T00:00:00Z", "end_time": "2025-12-07T00:00:00Z"}
REQUEST_TYPES = [EXPORT_REQUESTED, IMPORT_REQUESTED, CANCEL_REQUESTED]

Headers = tuple[tuple[str, bytes | None], ...]


@dataclass(frozen=True)
class Poison:
    kind: str
    value: bytes
    headers: Headers = ()


def encode(document: object) -> bytes:
    # ensure_ascii keeps lone surrogates as \ud800 escapes, as a careless producer would send.
    return json.dumps(document).encode()


def envelope(data: object, *, event_type: str = EXPORT_REQUESTED, **fields: Any) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "/poison",
        "type": event_type,
        "data": data,
        **fields,
    }


# -- Hypothesis strategies ----------------------------------------------------------------------

# Every code point, lone surrogates included, and the characters MongoDB refuses in keys.
_characters = st.characters(exclude_categories=())
tricky_texts = st.sampled_from(["", "$gt", "a.b", "a\x00", "\ud800", "x" * 9000])
texts = st.text(_characters, max_size=12) | tricky_texts
integers = (
    st.integers(-(2**70), 2**70)
    | st.sampled_from([2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64])
    | st.integers()
)
# Finite floats: NaN and Infinity are not JSON, and are sent raw (see `structured`).
scalars = (
    st.none() | st.booleans() | integers | st.floats(allow_nan=False, allow_infinity=False) | texts
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=16,
)
project_ids = st.sampled_from(["proj_1", "p.2", "a" * 128]) | st.from_regex(
    r"\A[A-Za-z0-9][A-Za-z0-9_-]{0,20}\Z"
)
# The shapes of `data` a request type reads, with any field replaced or added at random.
request_data = st.fixed_dictionaries(
    {"project_id": project_ids},
    optional={
        "job_id": st.uuids().map(str) | json_values,
        "filters": st.just(FILTERS)
        | st.dictionaries(texts, json_values, max_size=4)
        | st.dictionaries(tricky_texts, integers, min_size=1, max_size=2).map(FILTERS.__or__),
        "columns": st.lists(texts, max_size=3) | json_values,
        "idempotency_key": texts | json_values,
        "notify_url": st.just("https://crm.example.com/hook") | texts,
        "source": st.just({"bucket": "ferry", "key": "uploads/proj_1/c.csv"}) | json_values,
        "list_ids": st.lists(integers, min_size=1, max_size=3) | json_values,
        "format": st.sampled_from(["csv", "jsonl"]) | json_values,
        "reason": texts,
    },
).flatmap(
    lambda data: st.dictionaries(texts, json_values, max_size=2).map(lambda extra: extra | data)
)
cloud_events = st.builds(
    lambda data, event_type, extra: envelope(data, event_type=event_type, **extra),
    st.one_of(request_data, json_values),
    st.sampled_from(REQUEST_TYPES) | texts,
    st.dictionaries(
        st.sampled_from(["id", "source", "time", "subject", "specversion", "datacontenttype"]),
        json_values,
        max_size=2,
    ),
)
header_values = (
    st.none()
    | st.binary(max_size=20)
    | st.text(_characters, max_size=10).map(lambda text: text.encode(errors="surrogatepass"))
)
headers = st.lists(
    st.tuples(
        st.sampled_from(["content-type", "ce_id", "x-trace", "ce_type"]) | texts, header_values
    ),
    max_size=4,
).map(tuple)


@st.composite
def binary_mode(draw: st.DrawFn) -> tuple[bytes, Headers]:
    """The CloudEvents Kafka binding's binary mode: attributes in ce_* headers, data as value."""
    attributes = {
        "ce_specversion": draw(st.sampled_from([b"1.0", b"0.3"]) | st.binary(max_size=5)),
        "ce_id": draw(st.just(str(uuid.uuid4()).encode()) | st.binary(max_size=8)),
        "ce_source": b"/poison",
        "ce_type": draw(
            st.sampled_from([t.encode() for t in REQUEST_TYPES]) | st.binary(max_size=8)
        ),
    }
    content_type = draw(
        st.sampled_from([None, b"application/json", b"text/plain", b"application/cloudevents+json"])
    )
    listed: list[tuple[str, bytes | None]] = list(attributes.items())
    if content_type is not None:
        listed.append(("content-type", content_type))
    value = draw(
        st.one_of(request_data.map(encode), json_values.map(encode), st.binary(max_size=40))
    )
    return value, tuple(listed)


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


# Requests of a type Ferry reads, whose data names a project: the likeliest to reach the ledger.
typed_requests = st.builds(
    lambda data, event_type: envelope(data, event_type=event_type),
    request_data,
    st.sampled_from(REQUEST_TYPES),
)
structured = st.one_of(
    typed_requests.map(encode),
    typed_requests.map(encode),
    st.binary(max_size=64),
    json_values.map(encode),
    cloud_events.map(encode),
    st.integers(1, 5000).map(_nested),
    st.sampled_from([b'{"data": NaN}', b"[Infinity]", b"-Infinity"]),
    st.integers(20, 200).map(
        lambda depth: encode(envelope({"project_id": "p", "filters": nest(depth)}))
    ),
)


def nest(depth: int) -> object:
    value: object = 1
    for _ in range(depth):
        value = {"a": value}
    return value


records = st.one_of(st.tuples(structured, headers), binary_mode())


# -- A seeded corpus for the scenarios ----------------------------------------------------------

# The poisons that name their project: failed jobs (UNSUPPORTED_VALUE); the others dead letters.
FAILED_JOB_KINDS = frozenset(
    {
        "NUL in a filter key",
        "$ in a filter key",
        "dot in a filter key",
        "filter beyond 64 bits",
        "list_ids beyond 64 bits",
        "deep data",
    }
)


def corpus(project: str, count: int, *, seed: int, near_limit_bytes: int) -> list[Poison]:
    """`count` poisons for `project` (so on its partition), each of a kind that once stopped the
    intake or would have, with random variations drawn from `seed`. The one near the size limit
    is `near_limit_bytes` long, less up to 512 bytes."""
    rng = random.Random(seed)
    makers = [
        lambda: Poison("nested brackets", b"[" * rng.randint(1000, 5000)),
        lambda: Poison(
            "NUL in a filter key", encode(envelope(_data(project, {"start\x00time": 1})))
        ),
        lambda: Poison("$ in a filter key", encode(envelope(_data(project, {"$where": "1"})))),
        lambda: Poison("dot in a filter key", encode(envelope(_data(project, {"a.b": 1})))),
        lambda: Poison(
            "filter beyond 64 bits",
            encode(envelope(_data(project, {"status": 2 ** rng.randint(64, 200)}))),
        ),
        lambda: Poison(
            "list_ids beyond 64 bits",
            encode(
                envelope(
                    {
                        "project_id": project,
                        "source": {"bucket": "ferry", "key": f"uploads/{project}/c.csv"},
                        "list_ids": [2 ** rng.randint(64, 100)],
                    },
                    event_type=IMPORT_REQUESTED,
                )
            ),
        ),
        lambda: Poison("deep data", encode(envelope(_data(project, nest(rng.randint(40, 400)))))),
        lambda: Poison(
            "lone surrogate in the id", encode(envelope(_data(project, FILTERS), id="\ud800"))
        ),
        lambda: Poison("NaN", b'{"specversion": "1.0", "id": "x", "data": NaN}'),
        lambda: Poison("a 10000-digit integer", b'{"data": ' + b"9" * 10_000 + b"}"),
        lambda: Poison("random bytes", rng.randbytes(rng.randint(1, 200)), (("x-null", None),)),
        lambda: Poison(
            "binary mode, not JSON",
            b"hello",
            (
                ("ce_specversion", b"1.0"),
                ("ce_type", EXPORT_REQUESTED.encode()),
                ("content-type", b"text/plain"),
            ),
        ),
        lambda: Poison(
            "near the size limit", b"{" + b" " * (near_limit_bytes - rng.randint(2, 512)) + b"}"
        ),
        lambda: Poison(
            "a null header, not JSON", b"{oops", (("traceparent", None), ("ce_id", b"\xff"))
        ),
    ]
    return [makers[index % len(makers)]() for index in range(count)]


def _data(project: str, filters: object) -> dict[str, Any]:
    return {"project_id": project, "filters": filters}
