"""The ClickHouse store: open by DSN, migrate, insert enriched batches and sensor health, query.

One code path serves both kinds of DSN through clickhouse-connect:

- ``chdb://PATH`` — the embedded engine (chDB) on a local folder, relative or absolute. chDB
  allows one path per process and one process per path (a lock on ``PATH/status``): opening a
  path another process holds raises :class:`StoreLocked` naming that process.
- ``http(s)://user:password@host:port/database`` — a ClickHouse server (many readers and
  writers at once).

Enriched packets go in as one ClickHouse Native block per insert, built from the NumPy columns
(:mod:`sinks.native`, clickhouse-connect's ``raw_insert(fmt="Native")``); ``insert_arrow``
takes any Arrow table. An insert with a ``dedup_token`` is idempotent: every table keeps its
recent block ids (``non_replicated_deduplication_window``) and
``deduplicate_blocks_in_dependent_materialized_views`` extends that to the rollups (the daily
ones too, which the hourly ones feed), so a retried insert — even one that a crash cut short
after some tables were written — adds nothing twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import clickhouse_connect
import pyarrow as pa
from clickhouse_connect.driver.exceptions import ClickHouseError, DatabaseError, OperationalError

from core.errors import QueryFailed, StoreLocked, StoreUnavailable
from schemas.codec import Codec
from schemas.enriched import Enriched
from sinks.arrow import EnrichedColumns, columns_from_enriched, columns_from_record
from sinks.native import native_block
from sinks.schema import MIGRATIONS, SCHEMA_MIGRATIONS, ttl_statement

__all__ = ["INSERT_SETTINGS", "Store", "chdb_path", "safe_dsn"]

logger = logging.getLogger(__name__)

INSERT_SETTINGS = {
    # Every rollup checks the block ids too: a retry after a crash between the raw table
    # and the views fills in only what is missing.
    "deduplicate_blocks_in_dependent_materialized_views": 1,
    "parallel_view_processing": 1,
    # The views already aggregate each block; merging again on insert is wasted work.
    "optimize_on_insert": 0,
    # ``packets`` is partitioned by day, and ClickHouse refuses a block over more than 100 by
    # default: a sparse capture (a few packets a day for months) or scattered timestamps made
    # every insert fail, and the sink retried it for ever (found by fuzzing).
    "max_partitions_per_insert_block": 0,
}
_HEALTH_COLUMNS = [
    ("sensor", "sensor_id"),
    ("ts", "ts"),
    ("started", "started"),
    ("source", "source"),
    ("packets_seen", "packets_seen"),
    ("packets_dropped_kernel", "packets_dropped_kernel"),
    ("packets_malformed", "packets_malformed"),
    ("packets_out_of_prefix", "packets_out_of_prefix"),
    ("packets_truncated", "packets_truncated"),
    ("packets_sent", "packets_sent"),
    ("batches_sent", "batches_sent"),
    ("send_failed", "send_failed"),
    ("monitored_addresses", "monitored_addresses"),
    ("prefixes", "prefixes"),
    ("version", "version"),
]


def chdb_path(dsn: str) -> Path | None:
    """The folder of a ``chdb://PATH`` DSN (absolute), or None for a server DSN."""
    if not dsn.startswith("chdb://"):
        return None
    raw = dsn[len("chdb://") :].split("?", 1)[0]
    return Path(raw or ".").expanduser().resolve()


def _holder(path: Path) -> str | None:
    """Who holds a chDB folder's lock: 'process N (started ...)', or None when it is free."""
    status = path / "status"
    if not status.exists():
        return None
    try:
        fd = os.open(status, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            text = Path(status).read_text(errors="replace")
            info = dict(line.split(": ", 1) for line in text.splitlines() if ": " in line)
            pid = info.get("PID", "?")
            if pid == str(os.getpid()):
                return None  # this process: chDB lets it open the same path again
            started = info.get("Started at", "?")
            return f"process {pid} (started {started})"
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _locked_message(path: Path, holder: str) -> str:
    return (
        f"the chDB store {path} is in use by {holder}, probably a running `darkscope sink`: "
        "chDB allows one process per store. Stop that process, or point DARKSCOPE_SINK_DSN at a "
        "ClickHouse server (http://...) for live SQL while the sink ingests."
    )


class Store:
    """A darkscope ClickHouse database, reached through clickhouse-connect."""

    def __init__(self, client: Any, dsn: str, codec: Codec | None = None) -> None:
        """Wrap an open client (use :meth:`open`)."""
        self.client = client
        self.dsn = dsn
        self.codec = codec or Codec()
        # ClickHouse 25.x+ replaced insert_deduplicate by deduplicate_insert for every table.
        known = getattr(client, "server_settings", {}) or {}
        self._no_dedup: dict[str, Any] = (
            {"deduplicate_insert": "disable"} if "deduplicate_insert" in known else {"insert_deduplicate": 0}
        )

    @classmethod
    def open(cls, dsn: str, *, database: str | None = None, password: str | None = None) -> Store:
        """Connect to ``chdb://PATH`` or an ``http(s)://`` server (StoreLocked / StoreUnavailable)."""
        kwargs: dict[str, Any] = {}
        if database:
            kwargs["database"] = database
        path = chdb_path(dsn)
        if path is not None:
            holder = _holder(path)
            if holder is not None:
                raise StoreLocked(_locked_message(path, holder))
            path.mkdir(parents=True, exist_ok=True)
            target = f"chdb://{path}"
        else:
            target = dsn
            if password is not None:
                kwargs["password"] = password
        try:
            client = clickhouse_connect.get_client(dsn=target, **kwargs)
        except ClickHouseError as exc:
            if path is not None:
                holder = _holder(path)
                if holder is not None:
                    raise StoreLocked(_locked_message(path, holder)) from exc
            raise StoreUnavailable(f"cannot open ClickHouse at {safe_dsn(dsn)}: {exc}") from exc
        return cls(client, dsn)

    # -- schema ----------------------------------------------------------------------------

    def migrate(self, ttl_days: int | None = None) -> int:
        """Apply the schema steps not applied yet; returns the schema version (idempotent).

        ``ttl_days`` (when given) sets the raw table's TTL (0 removes it).
        """
        self._command(SCHEMA_MIGRATIONS)
        applied = {
            int(r[0]) for r in self.query("SELECT DISTINCT version FROM schema_migrations").result_rows
        }
        for step in MIGRATIONS:
            if step.version in applied:
                continue
            for statement in step.statements:
                self._command(statement)
            self.client.insert(
                "schema_migrations",
                [[step.version, step.name, datetime.now(tz=UTC)]],
                column_names=["version", "name", "applied_at"],
            )
            logger.info("schema step %d applied: %s", step.version, step.name)
        if ttl_days is not None:
            self._set_ttl(ttl_days)
        return self.version()

    def version(self) -> int:
        """The highest schema step applied (0 on an empty store)."""
        try:
            rows = self.query("SELECT max(version) FROM schema_migrations").result_rows
        except QueryFailed:
            return 0
        return int(rows[0][0] or 0)

    def _set_ttl(self, ttl_days: int) -> None:
        engine = str(
            self.query(
                "SELECT engine_full FROM system.tables "
                "WHERE database = currentDatabase() AND name = 'packets'"
            ).result_rows[0][0]
        )
        has = " TTL " in engine
        want = f"INTERVAL {ttl_days} DAY" if ttl_days > 0 else None
        if (want is None and not has) or (
            want is not None and want.replace(" ", "") in engine.replace(" ", "")
        ):
            return
        # Old parts keep their rows until they merge; do not rewrite the whole table now.
        self._command(ttl_statement(ttl_days), settings={"materialize_ttl_after_modify": 0})
        logger.info("raw packets TTL set to %s", f"{ttl_days} days" if ttl_days > 0 else "none")

    # -- inserts ---------------------------------------------------------------------------

    def insert_enriched(
        self,
        e: Enriched | Mapping[str, Any] | EnrichedColumns | Sequence[EnrichedColumns],
        dedup_token: str | None = None,
    ) -> int:
        """Insert the packets of one or more enriched batches; returns the rows inserted.

        ``e`` is an :class:`~streams.enrich.Enriched`, a decoded EnrichedBatch record, or
        column sets from :mod:`sinks.arrow`. With ``dedup_token``, a second insert with the
        same token adds nothing (in ``packets`` and every rollup); without one, nothing is
        deduplicated.
        """
        if isinstance(e, Enriched):
            parts = [columns_from_enriched(e)]
        elif isinstance(e, EnrichedColumns):
            parts = [e]
        elif isinstance(e, Mapping):
            parts = [columns_from_record(self.codec, e)]
        else:
            parts = list(e)
        rows = sum(len(p) for p in parts)
        if rows == 0:
            return 0
        columns, block = native_block(parts)
        self.insert_native("packets", columns, block, dedup_token)
        return rows

    def insert_native(
        self, table: str, columns: Sequence[str], block: bytes, dedup_token: str | None = None
    ) -> None:
        """Insert a ClickHouse Native block of ``columns`` (StoreUnavailable when ClickHouse
        cannot take it now)."""
        try:
            self.client.raw_insert(
                table, list(columns), block, settings=self.insert_settings(dedup_token), fmt="Native"
            )
        except (OperationalError, DatabaseError) as exc:
            raise StoreUnavailable(f"insert into {table} failed: {exc}") from exc

    def insert_arrow(self, table: str, data: pa.Table, dedup_token: str | None = None) -> None:
        """Insert an Arrow table (StoreUnavailable when ClickHouse cannot take it now)."""
        try:
            self.client.insert_arrow(table, data, settings=self.insert_settings(dedup_token))
        except (OperationalError, DatabaseError) as exc:
            raise StoreUnavailable(f"insert into {table} failed: {exc}") from exc

    def insert_settings(self, dedup_token: str | None = None) -> dict[str, Any]:
        """The settings of an insert: deduplicated by ``dedup_token``, or not at all without one."""
        settings: dict[str, Any] = dict(INSERT_SETTINGS)
        if dedup_token is None:
            settings.update(self._no_dedup)
        else:
            settings["insert_deduplication_token"] = dedup_token
        return settings

    def insert_sensor_health(self, records: Sequence[Mapping[str, Any]]) -> int:
        """Insert SensorHealth records (as decoded); a record inserted twice collapses."""
        if not records:
            return 0
        rows = [[_health_value(r, field) for _, field in _HEALTH_COLUMNS] for r in records]
        try:
            self.client.insert(
                "sensor_health",
                rows,
                column_names=[c for c, _ in _HEALTH_COLUMNS],
                settings=self._no_dedup,
            )
        except (OperationalError, DatabaseError) as exc:
            raise StoreUnavailable(f"insert into sensor_health failed: {exc}") from exc
        return len(rows)

    # -- queries ---------------------------------------------------------------------------

    def query(self, sql: str, parameters: Mapping[str, Any] | None = None) -> Any:
        """Run a query; returns clickhouse-connect's QueryResult (QueryFailed on a bad query)."""
        try:
            return self.client.query(sql, parameters=dict(parameters or {}))
        except OperationalError as exc:
            raise StoreUnavailable(f"query failed, ClickHouse unreachable: {exc}") from exc
        except ClickHouseError as exc:
            raise QueryFailed(_first_line(str(exc))) from exc

    def query_arrow(self, sql: str, parameters: Mapping[str, Any] | None = None) -> pa.Table:
        """Run a query; returns an Arrow table."""
        try:
            table: pa.Table = self.client.query_arrow(sql, parameters=dict(parameters or {}))
        except OperationalError as exc:
            raise StoreUnavailable(f"query failed, ClickHouse unreachable: {exc}") from exc
        except ClickHouseError as exc:
            raise QueryFailed(_first_line(str(exc))) from exc
        return table

    def _command(self, sql: str, settings: Mapping[str, Any] | None = None) -> None:
        try:
            self.client.command(sql, settings=dict(settings or {}))
        except OperationalError as exc:
            raise StoreUnavailable(f"ClickHouse unreachable: {exc}") from exc
        except ClickHouseError as exc:
            raise QueryFailed(f"{_first_line(str(exc))}\nin: {sql.strip()[:300]}") from exc

    # -- lifetime --------------------------------------------------------------------------

    def close(self) -> None:
        """Close the client (releases an embedded store's lock once no client holds it)."""
        with contextlib.suppress(Exception):
            self.client.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def tables(self) -> Iterator[str]:
        """Names of the tables and views in the store's database."""
        for (name,) in self.query(
            "SELECT name FROM system.tables WHERE database = currentDatabase()"
        ).result_rows:
            yield str(name)


def _health_value(record: Mapping[str, Any], field: str) -> Any:
    value = record.get(field)
    if field in ("ts", "started") and isinstance(value, int):
        return datetime.fromtimestamp(value / 1000, tz=UTC)
    if field == "packets_malformed":
        return dict(value or {})
    if field == "prefixes":
        return list(value or [])
    if field in {"version", "source"}:
        return str(value or "")
    return 0 if value is None else value


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text


def safe_dsn(dsn: str) -> str:
    """A DSN without its password, for messages."""
    if "@" in dsn and "://" in dsn:
        scheme, rest = dsn.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        return f"{scheme}://{creds.split(':', 1)[0]}:***@{host}"
    return dsn
