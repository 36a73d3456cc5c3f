"""Telling an outage from a bad record: the one exception-driven decision of the intake.

An outage (the database or broker unreachable, stepping down, timing out) passes: the record is
redelivered after a pause, as often as it takes. Anything else would most likely fail the same
way again, so the record gets a verdict instead (see RequestIntake).
"""

from __future__ import annotations

from aiokafka.errors import KafkaError, KafkaTimeoutError, ProducerClosed
from pymongo.errors import (
    ConnectionFailure,
    ExecutionTimeout,
    OperationFailure,
    WriteConcernError,
    WTimeoutError,
)

# Server error codes of a primary stepping down, a server shutting down or a network hiccup
# between servers: all pass with an election or a restart.
_TRANSIENT_MONGO_CODES = frozenset({6, 7, 89, 91, 189, 262, 9001, 10107, 11600, 11602, 13435})


def is_outage(exc: BaseException) -> bool:
    if isinstance(exc, ConnectionFailure | ExecutionTimeout | WTimeoutError | WriteConcernError):
        return True  # ConnectionFailure covers AutoReconnect, NetworkTimeout, server selection
    if isinstance(exc, OperationFailure):
        return exc.code in _TRANSIENT_MONGO_CODES or exc.has_error_label("RetryableWriteError")
    if isinstance(exc, KafkaTimeoutError | ProducerClosed):
        return True  # ProducerClosed: the worker is stopping; the next owner takes the record
    if isinstance(exc, KafkaError):
        return bool(exc.retriable)  # connection lost, no broker, leader moving, ...
    return isinstance(exc, ConnectionError | TimeoutError)
