"""Status events are input: whoever can write to the status topic must not be able to make the
API sign another project's files. Events are fed to the read model as the status feed gets them,
and every link the API would then serve is checked to point into the job's own files."""

from __future__ import annotations

import json
import uuid
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.api.dependencies import Services
from service.api.exports import export_link
from service.api.keys import ApiKeys
from service.api.links import UnsignableKeyError, report_links, signed_link
from service.api.ratelimit import RateLimiter
from service.api.read_model import REPORT_NAMES, ReadModel
from service.api.status_feed import apply_status_event
from service.config import Settings
from service.contracts.envelope import JOB_STATUS_CHANGED, make_event
from service.database import Database
from service.imports import files as import_files
from service.jobs.queue import Queue
from service.jobs.status import JobStatus
from service.jobs.view import job_view
from service.storage import ObjectStore
from tests.support.status_events import a_job

pytestmark = pytest.mark.integration

VICTIM = "victim"


def completed_import(project: str, job_id: str, *, version: int = 5) -> dict[str, Any]:
    """A completed import's view with two reports (as events carry them: no links)."""
    data = job_view(a_job(project, job_id=job_id, version=version))
    reports = {
        name: {"rows": 2, "url": None, "expires_at": None}
        for name in ("rejected_rows", "invalid_emails")
    }
    return {**data, "kind": "import", "dataset": "contacts", "reports": reports}


def encoded(data: dict[str, Any]) -> bytes:
    event = make_event(
        event_id=str(uuid.uuid4()),
        source="/attacker",
        event_type=JOB_STATUS_CHANGED,
        subject=str(data.get("id")),
        time=a_job("p").created_at,
        data={**data, "previous_status": "processing"},
    )
    return json.dumps(event).encode()


@pytest.fixture(scope="module")
def services(settings: Settings, database: Database, store: ObjectStore) -> Services:
    return Services(
        settings=settings,
        read_model=ReadModel(database),
        keys=ApiKeys(database),
        store=store,
        limiter=RateLimiter(rate=0, burst=1),  # links only: no request is limited here
        queue=Queue(database, max_running_per_project=2),
    )


async def served_keys(services: Services, view: dict[str, Any]) -> list[str]:
    """The object keys of every link the API serves for `view` (exports and imports alike)."""
    links = list((await report_links(services, view)).values())
    if view["kind"] == "export" and view["status"] == JobStatus.COMPLETED:
        links.append(await export_link(services, view))
    bucket = services.store.bucket
    keys = []
    for link in links:
        assert link is not None
        path = unquote(urlsplit(link.url).path)
        assert path.startswith(f"/{bucket}/")
        keys.append(path.removeprefix(f"/{bucket}/"))
    return keys


async def test_a_valid_event_serves_links_at_the_derived_keys(services: Services) -> None:
    project, job_id = f"p{uuid.uuid4().hex[:8]}", str(uuid.uuid4())
    assert await apply_status_event(services.read_model, encoded(completed_import(project, job_id)))
    view = await services.read_model.get(project, "import", job_id)
    assert view is not None
    assert sorted(await served_keys(services, view)) == [
        f"imports/{project}/{job_id}/invalid_emails.csv",
        f"imports/{project}/{job_id}/rejected_rows.csv",
    ]


def _other_projects_key(project: str, job_id: str) -> dict[str, Any]:
    data = completed_import(project, job_id)
    data["reports"]["rejected_rows"]["key"] = f"exports/{VICTIM}/{uuid.uuid4()}.csv"
    return data


def _escaping_key(project: str, job_id: str) -> dict[str, Any]:
    data = completed_import(project, job_id)
    data["reports"]["rejected_rows"]["key"] = f"imports/{project}/{job_id}/../../{VICTIM}/x.csv"
    return data


def _a_link_in_the_event(project: str, job_id: str) -> dict[str, Any]:
    data = completed_import(project, job_id)
    data["reports"]["rejected_rows"]["url"] = f"http://store/{VICTIM}/list.csv"
    return data


def _unknown_report(project: str, job_id: str) -> dict[str, Any]:
    data = completed_import(project, job_id)
    data["reports"]["../../victim/secrets"] = {"rows": 1, "url": None, "expires_at": None}
    return data


@pytest.mark.parametrize(
    "forge",
    [
        _other_projects_key,
        _escaping_key,
        _a_link_in_the_event,
        _unknown_report,
        lambda project, job_id: {**completed_import(project, job_id), "id": f"{job_id}/../x"},
        lambda project, job_id: {**completed_import(project, job_id), "id": job_id.upper()},
        lambda project, job_id: {**completed_import(project, job_id), "id": "../../victim"},
        lambda project, job_id: {
            **completed_import(project, job_id),
            "project_id": f"{project}/..",
        },
        lambda project, job_id: {**completed_import(project, job_id), "project_id": ".."},
        lambda project, job_id: {**completed_import(project, job_id), "project_id": ""},
        lambda project, job_id: {**completed_import(project, job_id), "format": "csv/../../x"},
        lambda project, job_id: {**completed_import(project, job_id), "version": "many"},
        lambda project, job_id: {**completed_import(project, job_id), "created_at": "yesterday"},
    ],
    ids=[
        "report-key-of-another-project",
        "report-key-with-dot-dot",
        "report-with-a-link",
        "unknown-report-name",
        "job-id-with-a-path",
        "job-id-not-canonical",
        "job-id-not-a-uuid",
        "project-id-with-a-path",
        "project-id-dot-dot",
        "project-id-empty",
        "format-with-a-path",
        "version-not-a-number",
        "created-at-not-a-time",
    ],
)
async def test_events_not_of_the_documented_form_are_ignored(
    services: Services, forge: Any
) -> None:
    project, job_id = f"p{uuid.uuid4().hex[:8]}", str(uuid.uuid4())
    forged = forge(project, job_id)
    assert not await apply_status_event(services.read_model, encoded(forged))
    for kind in ("import", "export"):
        assert await services.read_model.get(project, kind, job_id) is None
        assert await services.read_model.get(str(forged["project_id"]), kind, forged["id"]) is None


async def test_a_forged_event_cannot_replace_a_good_view(services: Services) -> None:
    project, job_id = f"p{uuid.uuid4().hex[:8]}", str(uuid.uuid4())
    assert await apply_status_event(
        services.read_model, encoded(completed_import(project, job_id, version=3))
    )
    forged = _other_projects_key(project, job_id)
    forged["version"] = 99
    assert not await apply_status_event(services.read_model, encoded(forged))
    view = await services.read_model.get(project, "import", job_id)
    assert view is not None
    assert view["version"] == 3
    assert all(key.startswith(f"imports/{project}/") for key in await served_keys(services, view))


async def test_nothing_outside_the_layout_is_ever_signed(services: Services) -> None:
    for key in (
        f"exports/{VICTIM}/../x.csv",
        f"uploads/{VICTIM}/list.csv",
        f"imports/{VICTIM}/{uuid.uuid4()}/source",
        f"exports/{VICTIM}/{uuid.uuid4()}.csv/../../y.csv",
    ):
        with pytest.raises(UnsignableKeyError):
            await signed_link(services, key, expires_at=None, filename="x.csv")


# Text that looks like what an attacker would try: paths, other projects, odd characters.
_pathish = st.one_of(
    st.text(max_size=40),
    st.lists(
        st.sampled_from(["..", ".", VICTIM, "exports", "imports", "uploads", "", "x.csv"])
    ).map("/".join),
)


@st.composite
def forged_events(draw: st.DrawFn) -> dict[str, Any]:
    project = draw(
        st.sampled_from(["attacker", VICTIM]) | st.from_regex(r"[a-z]{1,8}", fullmatch=True)
    )
    job_id = str(draw(st.uuids()))
    data = completed_import(project, job_id, version=draw(st.integers(1, 50)))
    if draw(st.booleans()):
        data["kind"] = "export"
        data["reports"] = None
    overrides = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "id": _pathish | st.just(job_id.upper()),
                "project_id": _pathish,
                "format": st.sampled_from(["csv", "jsonl"]) | _pathish,
                "compression": st.sampled_from(["none", "gzip"]) | _pathish,
                "reports": st.dictionaries(
                    st.sampled_from(sorted(REPORT_NAMES)) | _pathish,
                    st.fixed_dictionaries(
                        {
                            "rows": st.integers(0, 10),
                            "url": st.none() | _pathish,
                            "expires_at": st.none() | st.just("2999-01-01T00:00:00Z"),
                        },
                        optional={
                            "key": _pathish
                            | st.builds(
                                import_files.report_key,
                                st.just(VICTIM),
                                st.just(job_id),
                                st.sampled_from(sorted(REPORT_NAMES)),
                            ),
                        },
                    ),
                    max_size=3,
                ),
            },
        )
    )
    return {**data, **overrides}


@settings(
    max_examples=150,
    deadline=None,  # a loaded machine's database round trips are slow, not wrong
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=forged_events())
async def test_no_status_event_makes_the_api_serve_a_link_outside_the_job(
    services: Services, data: dict[str, Any]
) -> None:
    await apply_status_event(services.read_model, encoded(data))
    project, job_id = data["project_id"], data["id"]
    if not isinstance(project, str) or not isinstance(job_id, str):
        return
    for kind in ("import", "export"):
        view = await services.read_model.get(project, kind, job_id)
        if view is None:
            continue
        assert (view["project_id"], view["id"]) == (project, job_id)
        for key in await served_keys(services, view):
            assert key.startswith((f"imports/{project}/{job_id}/", f"exports/{project}/{job_id}."))
            assert ".." not in key
