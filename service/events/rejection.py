"""A request that cannot be acted on goes to the dead-letter topic with this code and reason."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Rejected:
    code: str
    reason: str
