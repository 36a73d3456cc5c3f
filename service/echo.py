"""Strings Ferry echoes from its input (a request's dataset name, filter values, an import's
header excerpt, an error message that quotes them) are capped before they leave in a status
event or an API answer: one request must not make an event too large to publish, or a page too
large to read. The marker says that, and how much, was cut."""

from __future__ import annotations

# A few hundred characters keep a message readable and every status event a few KB.
ECHO_LIMIT = 300
# Lists and mappings echoed as they came (an unparseable request's filters): this many items.
ECHO_ITEMS = 50


def capped(text: str, limit: int = ECHO_LIMIT) -> str:
    """`text`, or its first `limit` characters and a marker saying how many were cut."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… [{len(text) - limit} more characters]"


def capped_value(value: object, *, depth: int = 3) -> object:
    """A JSON-like value with every string capped, and lists and mappings cut to ECHO_ITEMS
    items, `depth` levels deep (deeper content is replaced by its type's name)."""
    if isinstance(value, str):
        return capped(value)
    if isinstance(value, bool | int | float) or value is None:
        return value
    if depth == 0:
        return f"<{type(value).__name__}>"
    if isinstance(value, dict):
        items = list(value.items())
        shown = {
            capped(str(key)): capped_value(item, depth=depth - 1)
            for key, item in items[:ECHO_ITEMS]
        }
        if len(items) > ECHO_ITEMS:
            shown["…"] = f"{len(items) - ECHO_ITEMS} more entries"
        return shown
    if isinstance(value, list | tuple):
        shown_list = [capped_value(item, depth=depth - 1) for item in value[:ECHO_ITEMS]]
        if len(value) > ECHO_ITEMS:
            shown_list.append(f"… {len(value) - ECHO_ITEMS} more items")
        return shown_list
    return capped(str(value))
