"""The importer against real MongoDB and S3: upserts and their options, idempotent re-runs and
retries, concurrent imports into one project, dry runs, URL sources through the SSRF guard,
each failure code, and cancellation leaving no report behind."""

from __future__ import annotations

import asyncio
import csv
import io
import uuid
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import pytest

from service.clock import utcnow
from service.config import ImportSettings
from service.database import Database
from service.datasets import ensure_dataset_indexes
from service.errors import FerryError
from service.imports import files
from service.imports.importer import Importer
from service.imports.model import ImportOptions, ImportResult, ImportSource
from service.imports.sources import Sources
from service.jobs.context import JobContext
from service.jobs.ledger import ClaimPolicy, Lease, Ledger
from service.jobs.model import Job
from service.jobs.status import JobStatus
from service.outbound.addresses import AddressPolicy
from service.outbound.guard import DestinationGuard
from service.storage import ObjectStore
from tests.support.receiver import Receiver, Reply

pytestmark = pytest.mark.integration

PART = 5 * 1024 * 1024
LEASE = timedelta(seconds=30)


@pytest.fixture(autouse=True)
async def indexes(database: Database) -> None:
    # As the worker creates them at start: the unique identifiers imports rely on.
    await ensure_dataset_indexes(database)


def make_importer(
    database: Database,
    store: ObjectStore,
    *,
    allow_loopback: bool = True,
    limits: Mapping[str, float] | None = None,
) -> Importer:
    settings = ImportSettings.model_validate({"batch_size": 50, **(limits or {})})
    guard = DestinationGuard(AddressPolicy(allow_loopback=allow_loopback))
    sources = Sources(
        store,
        guard,
        max_bytes=settings.max_file_bytes,
        timeout=5,
        deadline=settings.fetch_deadline_seconds,
        part_size=PART,
    )
    return Importer(database, store, sources, settings, part_size=PART, escape_formulas=True)


def project() -> str:
    return f"imp{uuid.uuid4().hex[:8]}"


async def upload(store: ObjectStore, project_id: str, data: bytes | str) -> ImportSource:
    raw = data.encode() if isinstance(data, str) else data
    key = files.upload_key(project_id, f"{uuid.uuid4()}.csv")
    await store.put(key, raw, content_type="text/csv")
    return ImportSource(bucket=store.bucket, key=key)


async def claimed(
    ledger: Ledger, project_id: str, source: ImportSource, **options: Any
) -> tuple[Job, JobContext]:
    now = utcnow()
    job = Job(
        id=str(uuid.uuid4()),
        project_id=project_id,
        kind="import",
        dataset="contacts",
        source=source,
        options=ImportOptions(**options),
        request_source="/tests",
        request_id=str(uuid.uuid4()),
        status=JobStatus.PENDING,
        created_at=now,
        updated_at=now,
    )
    await ledger.accept(job)
    claim = await ledger.claim("w", ClaimPolicy(LEASE, 3, 100))
    assert claim is not None
    assert claim.id == job.id
    context = JobContext(
        ledger, Lease(job.id, "w", claim.attempt), lease_duration=LEASE, progress_interval=0.0
    )
    return claim, context


async def run_import(
    importer: Importer, ledger: Ledger, project_id: str, source: ImportSource, **options: Any
) -> tuple[Job, ImportResult]:
    job, context = await claimed(ledger, project_id, source, **options)
    return job, await importer.run(job, context)


async def contacts(database: Database, project_id: str) -> dict[str, dict[str, Any]]:
    docs = await database["contacts"].find({"project_id": project_id}).to_list()
    return {str(doc.get("email") or doc.get("ext_id")): doc for doc in docs}


async def report(store: ObjectStore, result: ImportResult, name: str) -> list[list[str]]:
    data = await store.read(result.reports[name].key)
    return list(csv.reader(io.StringIO(data.decode(), newline="")))


def counts(result: ImportResult) -> tuple[int, int, int, int, int]:
    c = result.counts
    return c.rows_read, c.created, c.updated, c.unchanged, c.rejected


FILE = "EMAIL,EXT_ID,FIRSTNAME,CITY\nAnn@X.io,e1,Ann,Paris\nbob@x.io,,Bob,\ncy@x.io,e3,Cy,Oslo\n"


async def test_import_then_reimport_changes_nothing(
    database: Database, store: ObjectStore, ledger: Ledger
) -> None:
    p = project()
    importer = make_importer(database, store)
    source = await upload(store, p, FILE)
    _job, first = await run_import(importer, ledger, p, source, list_ids=[5])
    assert counts(first) == (3, 3, 0, 0, 0)
    assert first.reports == {}
    stored = await contacts(database, p)
    assert sorted(doc["contact_id"] for doc in stored.values()) == [1, 2, 3]
    ann = stored["ann@x.io"]
    assert (ann["ext_id"], ann["attributes"], ann["list_ids"]) == (
        "e1",
        {"FIRSTNAME": "Ann", "CITY": "Paris"},
        [5],
    )
    assert stored["bob@x.io"]["attributes"] == {"FIRSTNAME": "Bob"}
    assert (first.source_size_bytes, len(first.source_sha256)) == (len(FILE), 64)

    _, second = await run_import(importer, ledger, p, source, list_ids=[5])
    assert counts(second) == (3, 0, 0, 3, 0)
    assert await contacts(database, p) == stored  # not even modified_at moved


async def test_options_update_existing_empty_attributes_and_lists(
    database: Database, store: ObjectStore, ledger: Ledger
) -> None:
    p = project()
    importer = make_importer(database, store)
    await run_import(importer, ledger, p, await upload(store, p, FILE), list_ids=[1])
    change = "EMAIL,FIRSTNAME,CITY\nann@x.io,Annie,\nnew@x.io,New,Rome\n"
    source = await upload(store, p, change)

    _, kept = await run_import(importer, ledger, p, source, update_existing=False)
    assert counts(kept) == (2, 1, 0, 1, 0)
    assert (await contacts(database, p))["ann@x.io"]["attributes"]["FIRSTNAME"] == "Ann"

    _, updated = await run_import(importer, ledger, p, source, list_ids=[2])
    assert counts(updated) == (2, 0, 2, 0, 0)  # new@x.io joins list 2
    ann = (await contacts(database, p))["ann@x.io"]
    assert ann["attributes"] == {"FIRSTNAME": "Annie", "CITY": "Paris"}  # blank kept CITY
    assert ann["list_ids"] == [1, 2]

    _, cleared = await run_import(importer, ledger, p, source, empty_attributes=True)
    assert counts(cleared) == (2, 0, 1, 1, 0)
    assert (await contacts(database, p))["ann@x.io"]["attributes"] == {"FIRSTNAME": "Annie"}


async def test_a_retried_attempt_counts_what_the_first_did_and_duplicates_nothing(
    database: Database, store: ObjectStore, ledger: Ledger
) -> None:
    p = project()
    importer = make_importer(database, store)
    job, context = await claimed(ledger, p, await upload(store, p, FILE))
    first = await importer.run(job, context)
    # The same job once more, as a second attempt would run it after a crash.
    second = await importer.run(job.model_copy(update={"attempt": 2}), context)
    assert counts(first) == counts(second) == (3, 3, 0, 0, 0)
    assert len(await contacts(database, p)) == 3


async def test_concurrent_imports_into_one_project_make_each_contact_once(
    database: Database, store: ObjectStore, ledger: Ledger
) -> None:
    p = project()
    importer = make_importer(database, store, limits={"batch_size": 20})
    rows = [f"user{n}@x.io,U{n}" for n in range(150)]
    # Overlapping halves, imported at the same time by two jobs.
    sources = [
        await upload(store, p, "EMAIL,NAME\n" + "\n".join(rows[:100]) + "\n"),
        await upload(store, p, "EMAIL,NAME\n" + "\n".join(reversed(rows[50:])) + "\n"),
    ]
    claims = [await claimed(ledger, p, source) for source in sources]
    results = await asyncio.gather(*(importer.run(job, ctx) for job, ctx in claims))
    assert await database["contacts"].count_documents({"project_id": p}) == 150
    stored = await contacts(database, p)
    assert len(stored) == 150
    assert max(doc["contact_id"] for doc in stored.values()) >= 150
    assert len({doc["contact_id"] for doc in stored.values()}) == 150
    assert sum(result.counts.created for result in results) == 150
    assert all(result.counts.rejected == 0 for result in results)


async def test_conflicting_identifiers_are_rejected_and_reported(
    database: Database, store: ObjectStore, ledger: Ledger
) -> None:
    p = project()
    importer = make_importer(database, store)
    await run_import(importer, ledger, p, await upload(store, p, FILE))
    clash = "EMAIL,EXT_ID\nann@x.io,e3\n@SUM(A1),\n"
    _, result = await run_import(importer, ledger, p, await upload(store, p, clash))
    assert result.counts.rejected_by_reason == {"identifier_conflict": 1, "invalid_email": 1}
    rows = await report(store, result, "rejected_rows")
    assert rows[0] == ["line", "reason", "message", "row"]
    assert rows[1][:2] == ["2", "identifier_conflict"]
    assert "EXT_ID e3 belongs to contact" in rows[1][2]
    assert rows[2][:2] == ["3", "invalid_email"]
    assert rows[2][3] == "'@SUM(A1),"  # formula escaped
    invalid = await report(store, result, "invalid_emails")
    assert invalid[0] == ["line", "EMAIL", "EXT_ID", "reason"]
    assert invalid[1][:2] == ["3", "'@SUM(A1)"]


async def test_a_dry_run_counts_and_reports_but_writes_no_contact(
    database: Database, store: ObjectStore, ledger: Ledger
) -> None:
    p = project()
    importer = make_importer(database, store)
    data = FILE + "ann@x.io,e9,Again,\n"
    _, result = await run_import(importer, ledger, p, await upload(store, p, data), dry_run=True)
    assert counts(result) == (4, 3, 0, 0, 1)
    assert result.dry_run
    assert set(result.reports) == {"duplicate_email_id", "rejected_rows"}
    assert await contacts(database, p) == {}


async def test_a_url_source_is_fetched_through_the_guard(
    database: Database, store: ObjectStore, ledger: Ledger
) -> None:
    p = project()
    with Receiver() as receiver:
        receiver.script("/c.csv", Reply(body=FILE.encode()))
        job, result = await run_import(
            make_importer(database, store), ledger, p, ImportSource(url=receiver.url("/c.csv"))
        )
        assert counts(result) == (3, 3, 0, 0, 0)
        # The copy it imported from is gone.
        assert await store.size(files.fetched_source_key(p, job.id)) is None

        refused = make_importer(database, store, allow_loopback=False)
        with pytest.raises(FerryError) as caught:
            await run_import(refused, ledger, p, ImportSource(url=receiver.url("/c.csv")))
        assert caught.value.code == "UNSAFE_DESTINATION"
        assert len(receiver.received("/c.csv")) == 1  # the refused fetch never connected

        for status, code in ((404, "SOURCE_NOT_FOUND"), (302, "SOURCE_UNAVAILABLE")):
            receiver.script("/gone.csv", Reply(status=status, headers={"Location": "/c.csv"}))
            with pytest.raises(FerryError) as caught:
                await run_import(
                    make_importer(database, store),
                    ledger,
                    p,
                    ImportSource(url=receiver.url("/gone.csv")),
                )
            assert caught.value.code == code


@pytest.mark.parametrize(
    ("data", "limits", "code"),
    [
        (FILE, {"max_file_bytes": 20}, "FILE_TOO_LARGE"),
        (FILE, {"max_rows": 2}, "FILE_TOO_LARGE"),
        (b"PK\x03\x04\x14\x00\x00\x00\x08\x00EMAIL\n", {}, "INVALID_FILE"),
        ("FIRSTNAME,CITY\nAnn,Paris\n", {}, "INVALID_FILE"),
        ("EMAIL\n" + "a@x.io\n" * 3 + "Jos\xe9@x.io\n", {}, "INVALID_FILE"),
    ],
)
async def test_files_that_cannot_be_imported_fail_before_any_write(
    database: Database,
    store: ObjectStore,
    ledger: Ledger,
    data: bytes | str,
    limits: dict[str, float],
    code: str,
) -> None:
    p = project()
    raw = data.encode("latin-1") if isinstance(data, str) else data
    with pytest.raises(FerryError) as caught:
        await run_import(
            make_importer(database, store, limits=limits), ledger, p, await upload(store, p, raw)
        )
    assert caught.value.code == code
    assert caught.value.message
    assert await contacts(database, p) == {}


async def test_a_missing_source_fails_with_source_not_found(
    database: Database, store: ObjectStore, ledger: Ledger
) -> None:
    p = project()
    missing = ImportSource(bucket=store.bucket, key=files.upload_key(p, "nope.csv"))
    with pytest.raises(FerryError) as caught:
        await run_import(make_importer(database, store), ledger, p, missing)
    assert caught.value.code == "SOURCE_NOT_FOUND"


async def test_a_cancelled_import_leaves_no_report_visible(
    database: Database, store: ObjectStore, ledger: Ledger
) -> None:
    p = project()
    importer = make_importer(database, store, limits={"batch_size": 25})
    lines = [f"user{n}@x.io" if n % 10 else "not-an-email" for n in range(1500)]
    job, context = await claimed(ledger, p, await upload(store, p, "EMAIL\n" + "\n".join(lines)))
    task = asyncio.create_task(importer.run(job, context))
    deadline = asyncio.get_running_loop().time() + 60
    while await database["contacts"].count_documents({"project_id": p}) < 100:
        assert not task.done(), "the import finished before it could be cancelled"
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    listed = store._client.list_objects(store.bucket, prefix=f"imports/{p}/", recursive=True)
    assert [item.object_name for item in listed] == []
