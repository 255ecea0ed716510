"""Avro schemas (``*.avsc``, the single source of truth) and the codec built from them;
``schemas.versions``: the earlier versions (``v1/``) a reader still resolves."""

from schemas.batch import PacketBatch, batch_from_events, column_dtypes
from schemas.codec import MAGIC, PACKET_BATCH, PACKET_EVENT, Codec, Message, read_fingerprint
from schemas.registry import SchemaSet, default_schemas, fingerprint, load_schema_dir

__all__ = [
    "MAGIC",
    "PACKET_BATCH",
    "PACKET_EVENT",
    "Codec",
    "Message",
    "PacketBatch",
    "SchemaSet",
    "batch_from_events",
    "column_dtypes",
    "default_schemas",
    "fingerprint",
    "load_schema_dir",
    "read_fingerprint",
]
