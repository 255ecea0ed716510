"""The darkscope exception hierarchy, one module for the whole project.

DarkscopeError
├── ConfigError                 bad or missing setting
├── BrokerError                 the local Kafka broker could not be fetched/started/stopped
├── DemoError                   ``darkscope demo`` could not finish (a process died, a timeout)
├── CodecError                  bytes that are not a message darkscope can read
│   ├── UnknownSchema           single-object frame with a fingerprint no schema matches
│   ├── UndecodableMessage      not a single-object frame, or the body does not decode
│   └── SchemaMismatch          a record that does not fit the schema it is written with
├── CaptureError                a capture that cannot be read at all
│   └── TruncatedRecord         a capture record cut short (data ends mid-record)
└── SinkError
    ├── StoreUnavailable        ClickHouse cannot be reached or is locked by another process
    │   └── StoreLocked         an embedded chDB store held by another process (a running sink)
    └── QueryFailed             ClickHouse rejected a query (syntax, unknown table, ...)

Each class carries its ``reason``: the machine-readable word a message rejected for it is
dead-lettered with (the ``reason`` field of ``darkscope.DeadLetter``), the same whichever stage
rejects it: ``unknown_schema``, ``undecodable``, ``bad_record``.
"""

from __future__ import annotations

__all__ = [
    "BrokerError",
    "CaptureError",
    "CodecError",
    "ConfigError",
    "DarkscopeError",
    "DemoError",
    "QueryFailed",
    "SchemaMismatch",
    "SinkError",
    "StoreLocked",
    "StoreUnavailable",
    "TruncatedRecord",
    "UndecodableMessage",
    "UnknownSchema",
]


class DarkscopeError(Exception):
    """Base of every error darkscope raises on purpose."""

    reason = "error"  # the dead-letter reason of a message rejected for it


class ConfigError(DarkscopeError):
    """A setting is missing or invalid."""


class BrokerError(DarkscopeError):
    """The local Kafka broker could not be fetched, started or stopped."""


class DemoError(DarkscopeError):
    """``darkscope demo`` could not finish: a process it started died, or a stage timed out."""


class CodecError(DarkscopeError):
    """Bytes that darkscope cannot turn into a record."""

    reason = "undecodable"


class UnknownSchema(CodecError):
    """A single-object frame whose schema fingerprint no known schema has."""

    reason = "unknown_schema"

    def __init__(self, fingerprint: int) -> None:
        super().__init__(f"unknown schema fingerprint {fingerprint:016x}")
        self.fingerprint = fingerprint


class UndecodableMessage(CodecError):
    """Bytes that are not an Avro single-object frame, or whose body does not decode."""


class SchemaMismatch(CodecError):
    """A record or batch that does not fit the schema it is being written with."""

    reason = "bad_record"


class CaptureError(DarkscopeError):
    """A capture file that cannot be read at all (bad magic, unsupported format)."""


class TruncatedRecord(CaptureError):
    """A capture record that ends before its stated length."""


class SinkError(DarkscopeError):
    """The sink could not write to its store."""


class StoreUnavailable(SinkError):
    """ClickHouse is unreachable, or its embedded store is locked by another process."""


class StoreLocked(StoreUnavailable):
    """An embedded chDB store whose path another process holds (chDB allows one per path)."""


class QueryFailed(SinkError):
    """ClickHouse rejected a query: bad SQL, unknown table, wrong parameters."""
