"""One error registry: every code Ferry lets a requester or an operator read is an `ErrorCode`,
and every error class takes its code (and its HTTP status, and whether it is transient) from it."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import service
from service.error_codes import ErrorCode, error_codes_markdown
from service.errors import FerryError, InvalidRequestError, JobFailedError, RateLimitedError

SERVICE = Path(service.__file__).parent
_CODE_LIKE = re.compile(r"[A-Z][A-Z_]{4,}")

# Upper-case strings in service/ that are not error codes: environment variables, HTTP methods,
# the names of Brevo's process types and of contact attributes, asyncio's wait mode, log levels.
NOT_CODES = frozenset(
    {
        "ATTRIBUTES",
        "CONTACT_EXPORT",
        "CONTACT_ID",
        "DATASET",
        "DELETE",
        "EMAIL",
        "EXPORT_WEBHOOK",
        "EXT_ID",
        "FAILED",
        "FERRY_",
        "FIRST_COMPLETED",
        "IMPORTUSER",
        "LANDLINE_NUMBER",
        "LIST_IDS",
        "OPTIONS",
        "OTHER",
        "PATCH",
        "TRACE",
        "WARNING",
        "WHATSAPP",
    }
)
NOT_CODE_PREFIXES = ("FERRY_", "AWS_", "OTEL_")


def _upper_case_literals() -> dict[str, str]:
    """Every string literal in service/ that looks like a code -> one file that uses it."""
    found: dict[str, str] = {}
    for path in sorted(SERVICE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        # The names a package re-exports are not codes.
        exported = {
            id(element)
            for node in tree.body
            if isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets)
            and isinstance(node.value, ast.List | ast.Tuple)
            for element in node.value.elts
        }
        for node in ast.walk(tree):
            if (
                id(node) not in exported
                and isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and _CODE_LIKE.fullmatch(node.value)
            ):
                found.setdefault(node.value, str(path.relative_to(SERVICE.parent)))
    return found


def test_every_code_string_in_service_is_in_the_registry() -> None:
    unknown = {
        value: where
        for value, where in _upper_case_literals().items()
        if value not in ErrorCode.__members__
        and value not in NOT_CODES
        and not value.startswith(NOT_CODE_PREFIXES)
    }
    assert not unknown, (
        "codes missing from service/error_codes.py (or add a non-code to NOT_CODES): "
        + ", ".join(f"{value} ({where})" for value, where in sorted(unknown.items()))
    )


def test_not_codes_lists_only_strings_still_used() -> None:
    used = _upper_case_literals()
    assert sorted(NOT_CODES - used.keys()) == []
    assert not NOT_CODES & ErrorCode.__members__.keys()


def test_members_are_their_names_on_the_wire() -> None:
    for name, code in ErrorCode.__members__.items():
        assert code.value == name
        assert code == name  # compares and serialises as the plain string
        assert code.meaning
        assert code.http_status is None or 400 <= code.http_status < 600


def _error_classes() -> list[type[FerryError]]:
    for module in pkgutil.walk_packages([str(SERVICE)], prefix="service."):
        if not module.name.endswith(".__main__"):
            importlib.import_module(module.name)
    classes: list[type[FerryError]] = []
    pending: list[type[FerryError]] = [FerryError]
    while pending:
        cls = pending.pop()
        classes.append(cls)
        pending.extend(cls.__subclasses__())
    return classes


def test_every_error_class_takes_its_code_from_the_registry() -> None:
    classes = _error_classes()
    assert len(classes) > 20
    for cls in classes:
        assert cls.code in ErrorCode.__members__, f"{cls.__qualname__}: {cls.code!r}"
        code = ErrorCode.__members__[cls.code]
        if code.http_status is not None:
            assert cls.http_status == code.http_status, cls.__qualname__
        assert cls.transient == code.transient, cls.__qualname__


@pytest.mark.parametrize(
    ("error", "status", "transient"),
    [
        (RateLimitedError(3), 429, True),
        (InvalidRequestError("bad filter", code=ErrorCode.INVALID_FILTER), 400, False),
        (JobFailedError(ErrorCode.CANCELLED, "stopped"), 500, False),
    ],
)
def test_instances_carry_the_code_status_and_transience(
    error: FerryError, status: int, transient: bool
) -> None:
    assert error.http_status == status
    assert error.transient is transient
    assert error.code in ErrorCode.__members__


def test_the_generated_page_lists_every_code() -> None:
    page = error_codes_markdown()
    for code in ErrorCode:
        assert f"| `{code.value}` |" in page
    assert "| `RATE_LIMITED` | 429 | yes |" in page
