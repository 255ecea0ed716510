"""What the fault suite reads back from a pipeline: batches sent, batches the sink has stored
(committed), the windows counted, alerts and dead letters from the topics, packets from the store.

Everything is read from the broker or the store, never from the processes' own counters: a
process that was SIGKILLed cannot be asked, and what counts is what a reader finds afterwards.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson
from confluent_kafka import Message

from core.errors import CodecError
from core.topics import admin_client, committed, read_range, watermarks
from schemas.codec import Codec
from streams.alerts import record_key
from streams.enrich import port_values

__all__ = [
    "Cell",
    "alert_keys",
    "dead_letters",
    "read_all",
    "sent_batches",
    "sink_stored_batches",
    "store_cells",
    "window_cells",
]

Cell = tuple[str, str]  # (day 'YYYY-MM-DD', port label '23/tcp'): packets are counted per cell

_codec = Codec()


def read_all(bootstrap: str, topic: str) -> list[Message]:
    """Every message now in ``topic``."""
    marks = watermarks(bootstrap, topic)
    lo = {p: a for p, (a, _) in marks.items()}
    hi = {p: b for p, (_, b) in marks.items()}
    return list(read_range(bootstrap, topic, lo, hi, 60.0))


def _decode(msg: Message) -> dict[str, Any] | None:
    try:
        return _codec.decode(bytes(msg.value() or b"")).record
    except CodecError:
        return None


def sent_batches(bootstrap: str, topic: str) -> dict[tuple[int, int], int]:
    """(partition, offset) -> packets of every readable packet batch in the packets topic."""
    out = {}
    for m in read_all(bootstrap, topic):
        rec = _decode(m)
        if rec is not None and "count" in rec:
            out[(int(m.partition() or 0), int(m.offset() or 0))] = int(rec["count"])
    return out


def _committed(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    return {tp.partition: tp.offset for tp in committed(bootstrap, group, topic)}


def sink_stored_batches(bootstrap: str, group: str, enriched: str) -> set[tuple[int, int]]:
    """The packet batches (partition, offset in the packets topic) whose enriched record lies
    below the sink's committed offset: stored and committed."""
    committed = _committed(bootstrap, group, enriched)
    done = set()
    for m in read_all(bootstrap, enriched):
        if int(m.offset() or 0) >= committed.get(int(m.partition() or 0), -1):
            continue
        rec = _decode(m)
        if rec is not None and "source_offset" in rec:
            done.add((int(rec["source_partition"]), int(rec["source_offset"])))
    return done


def _day(start: int) -> str:
    seconds = start / 1e9 if start > 10**11 else start  # window starts in ns or s
    return datetime.fromtimestamp(seconds, tz=UTC).date().isoformat()


def window_cells(bootstrap: str, app_id: str) -> Counter[Cell]:
    """Packets per (day, port) summed over the closed 1-hour ``port`` windows, from the
    window_counts table's changelog (its last value per key)."""
    topic = f"{app_id}-window_counts-changelog"
    if topic not in admin_client(bootstrap).list_topics(timeout=10).topics:
        return Counter()
    last: dict[bytes, bytes] = {}
    for m in read_all(bootstrap, topic):
        if m.value() is None:
            continue  # a tombstone: the window left the table after the retention, still counted
        else:
            last[m.key() or b""] = bytes(m.value() or b"")
    out: Counter[Cell] = Counter()
    for key, value in last.items():
        parts = key.decode().split("|")
        if len(parts) != 3 or parts[0] != "port" or parts[1] != "1h":
            continue  # a replay point, another kind, or minute windows
        w = orjson.loads(value)
        for label, packets in zip(w["values"], w["packets"], strict=True):
            out[(_day(int(w["start"])), label)] += int(packets)
    return out


def store_cells(store: Any) -> Counter[Cell]:
    """Packets per (day, port) in the store's packets table (labelled as the windows are)."""
    rows = store.query(
        "SELECT toString(day), protocol, dport, count() FROM packets GROUP BY 1, 2, 3"
    ).result_rows
    out: Counter[Cell] = Counter()
    if not rows:
        return out
    proto = np.array([r[1] for r in rows], dtype=np.uint8)
    dport = np.array([r[2] for r in rows], dtype=np.uint16)
    codes, labels = port_values(proto, dport)
    for (day, _, _, n), code in zip(rows, codes.tolist(), strict=True):
        out[(str(day), labels[code])] += int(n)
    return out


def alert_keys(bootstrap: str, topic: str) -> Counter[str]:
    """How many times each alert record (alert id, state, revision) is on the alerts topic."""
    return Counter(record_key(r) for m in read_all(bootstrap, topic) if (r := _decode(m)) is not None)


def dead_letters(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    """Every dead letter, decoded."""
    return [r for m in read_all(bootstrap, topic) if (r := _decode(m)) is not None]
