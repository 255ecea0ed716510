"""producers.chunks: plain and gzip byte streams in chunks, and pipe readiness."""

from __future__ import annotations

import gzip
import io
import os

from producers.chunks import ChunkSource


def drain(src: ChunkSource) -> bytes:
    out = b""
    while chunk := src.read():
        out += chunk
    return out


def test_plain_bytes_come_back_unchanged() -> None:
    data = bytes(range(256)) * 100
    src = ChunkSource(io.BytesIO(data), 1024)
    assert not src.compressed and drain(src) == data and src.error is None


def test_gzip_members_are_joined_and_chunks_bounded() -> None:
    data = os.urandom(50_000)
    src = ChunkSource(io.BytesIO(gzip.compress(data[:20_000]) + gzip.compress(data[20_000:])), 4096)
    chunks = []
    while chunk := src.read():
        chunks.append(chunk)
    assert src.compressed and b"".join(chunks) == data and src.error is None
    assert max(map(len, chunks)) <= 4096


def test_fill_writes_into_the_given_buffer() -> None:
    src = ChunkSource(io.BytesIO(b"abcdefgh" * 1000), 1024)
    buf = bytearray(1024)
    got = src.fill(memoryview(buf))
    assert buf[:got] == (b"abcdefgh" * 1000)[:got] and got > 0


def test_a_cut_gzip_stream_sets_the_error() -> None:
    packed = gzip.compress(os.urandom(10_000))
    src = ChunkSource(io.BytesIO(packed[:-100]), 1024)
    drain(src)
    assert src.error == "gzip stream ends early"


def test_a_pipe_is_ready_only_when_it_has_data() -> None:
    r, w = os.pipe()
    os.write(w, b"\xd4\xc3\xb2\xa1")
    with os.fdopen(r, "rb") as stream:
        src = ChunkSource(stream, 1024)
        assert src.read() == b"\xd4\xc3\xb2\xa1"
        assert not src.ready(0.0)
        os.write(w, b"more")
        assert src.ready(1.0)
        os.close(w)
        assert src.read() == b"more" and src.read() == b""


def test_regular_streams_are_always_ready() -> None:
    assert ChunkSource(io.BytesIO(b"x"), 1024).ready(0.0)
