"""What the job ledger (MongoDB) and the broker will take, checked before anything is written.

A value that breaks one of these rules would make the database driver or the server raise on
every redelivery of its record, so it is judged here instead, with a clear reason. The reason
names where the value is but never echoes it: a failed job, a log line and a dead-letter header
must all stay storable themselves.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

# BSON stores signed 64-bit integers at most; pymongo raises OverflowError beyond.
MIN_INT64 = -(2**63)
MAX_INT64 = 2**63 - 1
# Well inside MongoDB's own limit of 100 levels (and Python's recursion limit), with room for
# the levels the ledger puts around a request's values.
MAX_DEPTH = 32
# No field of a request needs more (URLs and object keys are shorter still); a longer string is a
# mistake or an attack, and would be copied into every status event of the job.
MAX_STRING_CHARS = 8192
# Characters MongoDB refuses in a field name (NUL), or reads as an operator or a path (`$`, `.`).
FORBIDDEN_KEY_CHARACTERS = ("\x00", "$", ".")
_PATH_SEGMENT_CHARS = 40


def unstorable(value: object, *, path: str = "") -> str | None:
    """Why `value` (parsed JSON) cannot be stored as it is, or None when it can."""
    return next(_problems(value, path, 0), None)


def _problems(value: object, path: str, depth: int) -> Iterator[str]:  # noqa: C901, PLR0912
    where = path or "the value"
    if depth > MAX_DEPTH:
        yield f"{where}: nested more than {MAX_DEPTH} levels deep"
        return
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, int):
        if not MIN_INT64 <= value <= MAX_INT64:
            yield f"{where}: integer outside the signed 64-bit range the database stores"
    elif isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):  # noqa: PLR0124 - NaN test
            yield f"{where}: not a finite number"
    elif isinstance(value, str):
        yield from _string_problems(value, where)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _problems(item, f"{path}[{index}]", depth + 1)
    elif isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):  # pragma: no cover - JSON keys are strings
                yield f"{where}: a key that is not a string"
                continue
            inner = f"{path}.{segment(key)}" if path else segment(key)
            problem = next(_string_problems(key, f"{inner} (the key)"), None)
            if problem is not None:
                yield problem
            elif any(character in key for character in FORBIDDEN_KEY_CHARACTERS):
                yield f"{inner}: a key may not contain NUL, '$' or '.'"
            else:
                yield from _problems(item, inner, depth + 1)
    else:  # pragma: no cover - json.loads makes nothing else
        yield f"{where}: a {type(value).__name__} is not a JSON value"


def _string_problems(value: str, where: str) -> Iterator[str]:
    if len(value) > MAX_STRING_CHARS:
        yield f"{where}: a string of {len(value)} characters; the limit is {MAX_STRING_CHARS}"
        return
    try:
        value.encode()
    except UnicodeEncodeError:
        # JSON's \ud800 escapes parse to lone surrogates, which UTF-8 (so BSON) cannot hold.
        yield f"{where}: a string holding a lone UTF-16 surrogate, which UTF-8 cannot encode"


def segment(key: str) -> str:
    """A key as it may appear in a reason: escaped to printable ASCII and shortened."""
    shown = key if key.isidentifier() and key.isascii() else json.dumps(key)
    if len(shown) > _PATH_SEGMENT_CHARS:
        shown = shown[: _PATH_SEGMENT_CHARS - 3] + "..."
    return shown
