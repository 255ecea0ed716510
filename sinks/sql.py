"""`darkscope sql`: run one query against the store and render the answer (table, CSV, JSON)."""

from __future__ import annotations

import csv
import io
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import orjson
from rich.table import Table

from core.errors import QueryFailed
from sinks.store import Store

__all__ = ["Answer", "render_csv", "render_json", "render_table", "run_sql"]


@dataclass(frozen=True)
class Answer:
    """Column names and rows of a query."""

    columns: list[str]
    rows: list[Sequence[Any]]


def run_sql(dsn: str, sql: str, password: str | None = None) -> Answer:
    """Open the store (StoreLocked when a sink holds it), run ``sql``, close."""
    with Store.open(dsn, password=password) as store:
        try:
            result = store.query(sql)
        except QueryFailed as exc:
            if "schema_migrations" not in set(store.tables()):
                raise QueryFailed(
                    f"{exc} (the store {dsn} holds no darkscope tables yet: a sink creates them, "
                    "`darkscope sink`, or `make demo` fills a store)"
                ) from exc
            raise
        return Answer(list(result.column_names), [tuple(r) for r in result.result_rows])


def _text(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    if value is None:
        return ""
    return str(value)


def _json_default(value: Any) -> Any:
    if isinstance(value, (ipaddress.IPv4Address, ipaddress.IPv6Address, Decimal, bytes)):
        return str(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"cannot render {type(value).__name__} as JSON")


def render_csv(answer: Answer) -> str:
    """CSV with a header line."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(answer.columns)
    writer.writerows([[_text(v) for v in row] for row in answer.rows])
    return buf.getvalue()


def render_json(answer: Answer) -> str:
    """A JSON array of objects, one per row."""
    objects = [dict(zip(answer.columns, row, strict=True)) for row in answer.rows]
    return orjson.dumps(objects, default=_json_default, option=orjson.OPT_INDENT_2).decode()


def render_table(answer: Answer) -> Table:
    """A rich table; numbers right-aligned."""
    table = Table(show_lines=False, caption_justify="left")
    sample = answer.rows[0] if answer.rows else [None] * len(answer.columns)
    for name, value in zip(answer.columns, sample, strict=True):
        numeric = isinstance(value, (int, float, Decimal)) and not isinstance(value, bool)
        table.add_column(name, justify="right" if numeric else "left", no_wrap=True)
    for row in answer.rows:
        table.add_row(
            *[_text(v) if not isinstance(v, date) or isinstance(v, datetime) else v.isoformat() for v in row]
        )
    table.caption = f"{len(answer.rows)} row{'s' if len(answer.rows) != 1 else ''}"
    return table
