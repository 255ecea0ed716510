"""Earlier versions of the schemas, and what a reader fills in for what they did not carry.

Messages already on the topics were written by an earlier version of a record (its writer
fingerprint says which): the :class:`~schemas.codec.Codec` registers every earlier version in
``schemas/v1/`` as a writer, so Avro's resolution reads them into today's record, and today's
frames stay readable by an earlier reader, which skips the fields it does not know. Fields
added since are ``bytes`` columns with an empty default (or numbers with a default that means
"not sent"), never a changed dtype: the ``dtype`` attribute is not part of the canonical form,
so a changed dtype would keep the fingerprint and break every reader.

PacketBatch version 2 (issue 18) added ``inner_src6``, ``inner_dst6`` (the datagram an ICMPv6
error quotes), ``total_length`` (32-bit: an IPv6 jumbogram's length), ``caplen``,
``truncated`` and ``ip_reserved`` (the IPv4 reserved bit, which version 1 kept as bit 4 of
``ip_flags``). :func:`fill_v1_columns` derives them for a version-1 batch.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

import numpy as np
import numpy.typing as npt

from schemas.registry import SCHEMA_DIR, load_schema_dir

__all__ = ["ADDED_IN_V2", "PREVIOUS_DIRS", "fill_v1_columns", "previous_schemas"]

Array = npt.NDArray[Any]

PREVIOUS_DIRS = (SCHEMA_DIR / "v1",)

# PacketBatch columns a version-1 writer does not send (they decode as the empty default).
ADDED_IN_V2 = ("inner_src6", "inner_dst6", "total_length", "caplen", "truncated", "ip_reserved")

_IPV4_RESERVED = 4  # version 1's ip_flags bit for the reserved flag


@cache
def previous_schemas() -> tuple[dict[str, Any], ...]:
    """Every earlier version of a record (self-contained), to register as a writer."""
    out: list[dict[str, Any]] = []
    for directory in PREVIOUS_DIRS:
        old = load_schema_dir(directory)
        out += [old[name] for name in old]
    return tuple(out)


def fill_v1_columns(cols: dict[str, Array], n: int, missing: set[str], dtypes: Mapping[str, Any]) -> None:
    """Columns of ``missing`` (a version-1 writer's batch) as version 1's fields imply them:
    no quoted IPv6 addresses, the 16-bit length, capture length and truncation unknown (0),
    and the reserved bit moved out of ``ip_flags``."""
    for name in ("inner_src6", "inner_dst6", "caplen", "truncated"):
        if name in missing:
            cols[name] = np.zeros(n, dtype=dtypes[name])
    if "total_length" in missing:
        cols["total_length"] = cols["length"].astype("<u4")
    if "ip_reserved" in missing:
        flags = cols["ip_flags"]
        v4 = cols["ip_version"] == 4
        cols["ip_reserved"] = np.where(v4, (flags & _IPV4_RESERVED) >> 2, 0).astype("u1")
        cols["ip_flags"] = np.where(v4, flags & ~np.uint8(_IPV4_RESERVED), flags).astype("u1")
