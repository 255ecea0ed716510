"""Load the Avro schemas shipped in this folder and compute their fingerprints.

The ``.avsc`` files are the single source of truth for field names and types. A schema may
name a record defined in another file (``"type": "darkscope.PacketBatch"``); the loader
inlines that definition so every schema stands alone and has one canonical form.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

from fastavro.schema import fingerprint as fastavro_fingerprint
from fastavro.schema import to_parsing_canonical_form

__all__ = [
    "SCHEMA_DIR",
    "SchemaSet",
    "default_schemas",
    "fingerprint",
    "full_name",
    "load_schema_dir",
]

SCHEMA_DIR = Path(__file__).resolve().parent

Schema = dict[str, Any]


def full_name(schema: Mapping[str, Any]) -> str:
    """The namespace-qualified name of a named schema."""
    name = str(schema["name"])
    ns = schema.get("namespace")
    return name if "." in name or not ns else f"{ns}.{name}"


def fingerprint(schema: Mapping[str, Any] | str | list[Any]) -> int:
    """CRC-64-AVRO fingerprint of the schema's Parsing Canonical Form (Java's
    ``SchemaNormalization.parsingFingerprint64``, unsigned); a frame carries it little-endian."""
    canonical = to_parsing_canonical_form(dict(schema) if isinstance(schema, Mapping) else schema)
    return int.from_bytes(bytes.fromhex(fastavro_fingerprint(canonical, "CRC-64-AVRO")), "little")


def _inline(node: Any, defs: Mapping[str, Schema], seen: set[str]) -> Any:
    """Replace references to named records of other files by their definition (first use)."""
    if isinstance(node, str):
        if node in defs and node not in seen:
            seen.add(node)
            return _inline(defs[node], defs, seen)
        return node
    if isinstance(node, list):
        return [_inline(n, defs, seen) for n in node]
    if isinstance(node, dict):
        if node.get("type") in ("record", "error", "enum", "fixed") and "name" in node:
            seen.add(full_name(node))
        return {
            k: (_inline(v, defs, seen) if k in ("type", "items", "values", "fields") else v)
            for k, v in node.items()
        }
    return node


class SchemaSet:
    """Named schemas, each self-contained, with their fingerprints."""

    def __init__(self, raw: Mapping[str, Schema]) -> None:
        self.schemas: dict[str, Schema] = {}
        for name, schema in raw.items():
            self.schemas[name] = _inline(schema, raw, {name})
        self.fingerprints = {name: fingerprint(s) for name, s in self.schemas.items()}

    def __getitem__(self, name: str) -> Schema:
        return self.schemas[name]

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.schemas)


def load_schema_dir(directory: Path = SCHEMA_DIR) -> SchemaSet:
    """Read every ``*.avsc`` in ``directory`` into a SchemaSet keyed by full name."""
    raw: dict[str, Schema] = {}
    for path in sorted(directory.glob("*.avsc")):
        schema = json.loads(path.read_text())
        raw[full_name(schema)] = schema
    return SchemaSet(raw)


@cache
def default_schemas() -> SchemaSet:
    """The schemas shipped with darkscope (read once per process)."""
    return load_schema_dir()
