"""producers.pcapng: sections, interfaces, packet blocks, skipped and corrupt blocks."""

from __future__ import annotations

import struct

import pytest

from core.errors import CaptureError, TruncatedRecord
from producers.frames import ParseResult
from producers.pcapng import PcapngReader, is_pcapng
from tests.producers.pktbuild import block, epb, ether, feed, idb, ipv4, opb, shb, spb, tcp, udp

T_US = 1_650_000_000_123_456  # microseconds
FRAMES = [ether(ipv4(tcp(1000 + i, 23))) for i in range(4)]


def read_all(data: bytes, chunk: int | None = None) -> tuple[list[ParseResult], PcapngReader]:
    """Feed a whole file to a reader, ``chunk`` bytes at a time (all at once by default)."""
    reader, start = PcapngReader.from_start(data)
    return feed(reader, start, data, chunk), reader


def column(results: list[ParseResult], name: str) -> list[int]:
    return [int(x) for r in results for x in getattr(r.frames, name)]


def payloads(results: list[ParseResult]) -> list[bytes]:
    return [
        bytes(r.frames.data[o : o + c])
        for r in results
        for o, c in zip(r.frames.data_off, r.frames.caplen, strict=True)
    ]


def problems(results: list[ParseResult]) -> list[tuple[str, int]]:
    return [(str(p.reason), p.offset) for r in results for p in r.problems]


def simple_file(big: bool = False) -> bytes:
    return shb(big=big) + idb(1, big=big) + b"".join(epb(f, T_US + i, big=big) for i, f in enumerate(FRAMES))


@pytest.mark.parametrize("big", [False, True])
def test_enhanced_packet_blocks_in_either_byte_order(big: bool) -> None:
    results, _ = read_all(simple_file(big))
    assert payloads(results) == FRAMES
    assert column(results, "ts") == [(T_US + i) * 1000 for i in range(4)]
    assert column(results, "linktype") == [1] * 4 and problems(results) == []


@pytest.mark.parametrize("chunk", [1, 5, 13, 64, 100, 333])
def test_blocks_split_across_chunks_are_read_once_each(chunk: int) -> None:
    whole, _ = read_all(simple_file())
    pieces, _ = read_all(simple_file(), chunk)
    assert column(pieces, "rec_off") == column(whole, "rec_off") and problems(pieces) == []
    assert payloads(pieces) == FRAMES


def test_record_offsets_point_at_the_blocks() -> None:
    data = simple_file()
    results, _ = read_all(data)
    first = len(shb()) + len(idb(1))
    assert column(results, "rec_off")[:2] == [first, first + len(epb(FRAMES[0], 0))]


def test_interfaces_have_their_own_link_type_resolution_and_offset() -> None:
    raw = ipv4(udp(), proto=17)
    data = (
        shb()
        + idb(1)  # default 10^-6
        + idb(101, tsresol=9)  # nanoseconds
        + idb(228, tsresol=0x80 | 10, tsoffset=100)  # 2^-10 s, plus 100 s
        + epb(FRAMES[0], 1_000_000, iface=0)
        + epb(raw, 2_000_000_123, iface=1)
        + epb(raw, (5 << 10) | 512, iface=2)
    )
    results, reader = read_all(data)
    assert [i.linktype for i in reader.interfaces] == [1, 101, 228]
    assert column(results, "linktype") == [1, 101, 228]
    assert column(results, "ts") == [1_000_000_000, 2_000_000_123, 105_500_000_000]


def test_each_section_starts_a_new_interface_table_in_its_own_byte_order() -> None:
    raw = ipv4(udp(), proto=17)
    data = shb() + idb(1) + epb(FRAMES[0], 1) + shb(big=True) + idb(101, big=True) + epb(raw, 2, big=True)
    results, _ = read_all(data)
    assert column(results, "linktype") == [1, 101] and payloads(results) == [FRAMES[0], raw]
    assert column(results, "ts") == [1000, 2000]


def test_simple_packet_blocks_take_the_previous_time_and_are_counted() -> None:
    data = shb() + idb(1, snaplen=60) + epb(FRAMES[0], T_US) + spb(FRAMES[1]) + spb(FRAMES[2] + bytes(40)[:6])
    results, _ = read_all(data)
    assert column(results, "ts") == [T_US * 1000] * 3
    assert sum(r.untimed for r in results) == 2
    assert column(results, "caplen") == [len(FRAMES[0]), len(FRAMES[1]), 60]


def test_a_simple_packet_block_holds_at_most_the_original_length() -> None:
    data = shb() + idb(1) + epb(FRAMES[0], 5) + spb(FRAMES[1] + b"\x00\x00", origlen=len(FRAMES[1]))
    results, _ = read_all(data)
    assert payloads(results)[1] == FRAMES[1]


def test_obsolete_packet_blocks_are_read() -> None:
    data = shb() + idb(113) + idb(1) + opb(FRAMES[0], T_US, iface=1)
    results, _ = read_all(data)
    assert payloads(results) == [FRAMES[0]] and column(results, "linktype") == [1]
    assert column(results, "ts") == [T_US * 1000]


def test_name_statistics_and_secrets_blocks_are_skipped_quietly() -> None:
    data = shb() + idb(1) + block(4, bytes(8)) + epb(FRAMES[0], 1) + block(5, bytes(12)) + block(10, bytes(8))
    results, _ = read_all(data)
    assert payloads(results) == [FRAMES[0]] and problems(results) == []
    assert sum(r.skipped for r in results) == 3


def test_unknown_block_types_are_counted_and_skipped() -> None:
    head = shb() + idb(1)
    data = head + block(0x1234, bytes(8)) + epb(FRAMES[0], 1)
    results, _ = read_all(data)
    assert payloads(results) == [FRAMES[0]]
    assert problems(results) == [("unknown_block", len(head))]


def test_a_block_whose_two_lengths_differ_is_skipped_and_reading_resumes() -> None:
    bad = bytearray(epb(FRAMES[1], 2))
    bad[-4:] = struct.pack("<I", 999)
    head = shb() + idb(1) + epb(FRAMES[0], 1)
    data = head + bytes(bad) + epb(FRAMES[2], 3) + epb(FRAMES[3], 4)
    results, _ = read_all(data)
    assert payloads(results) == [FRAMES[0], FRAMES[2], FRAMES[3]]
    assert problems(results) == [("bad_record_length", len(head))]


@pytest.mark.parametrize("length", [7, 13, 1 << 30])
def test_an_impossible_block_length_is_skipped_and_reading_resumes(length: int) -> None:
    bad = bytearray(epb(FRAMES[1], 2))
    bad[4:8] = struct.pack("<I", length)
    head = shb() + idb(1) + epb(FRAMES[0], 1)
    results, _ = read_all(head + bytes(bad) + epb(FRAMES[2], 3))
    assert payloads(results) == [FRAMES[0], FRAMES[2]]
    assert problems(results) == [("bad_record_length", len(head))]


def test_a_caplen_that_does_not_fit_its_block_skips_only_that_packet() -> None:
    head = shb() + idb(1) + epb(FRAMES[0], 1)
    data = head + epb(FRAMES[1], 2, caplen=500) + epb(FRAMES[2], 3)
    results, _ = read_all(data)
    assert payloads(results) == [FRAMES[0], FRAMES[2]]
    assert problems(results) == [("bad_record_length", len(head))]


def test_a_packet_naming_a_missing_interface_is_counted() -> None:
    head = shb() + idb(1)
    results, _ = read_all(head + epb(FRAMES[0], 1, iface=3) + epb(FRAMES[1], 2))
    assert payloads(results) == [FRAMES[1]] and problems(results) == [("unknown_interface", len(head))]


def test_a_file_cut_inside_a_block_counts_truncated_record() -> None:
    data = simple_file()
    results, _ = read_all(data[:-7])
    assert len(payloads(results)) == 3
    assert problems(results) == [("truncated_record", len(data) - len(epb(FRAMES[3], 0)))]


def test_an_unusable_timestamp_resolution_falls_back_to_microseconds() -> None:
    results, _ = read_all(shb() + idb(1, tsresol=0x7F) + epb(FRAMES[0], 7))
    assert column(results, "ts") == [7000] and [p[0] for p in problems(results)] == ["bad_record_length"]


def test_garbage_until_the_end_counts_resync_failed() -> None:
    head = shb() + idb(1) + epb(FRAMES[0], 1)
    results, _ = read_all(head + b"\xff" * 400)
    assert payloads(results) == [FRAMES[0]]
    assert [p[0] for p in problems(results)] == ["bad_record_length", "resync_failed"]


def test_magic_detection_and_bad_headers() -> None:
    assert is_pcapng(shb()) and is_pcapng(shb(big=True)) and not is_pcapng(b"\xd4\xc3\xb2\xa1")
    with pytest.raises(CaptureError, match="not a pcapng"):
        PcapngReader.from_start(b"\xd4\xc3\xb2\xa1" + bytes(40))
    with pytest.raises(TruncatedRecord):
        PcapngReader.from_start(shb()[:20])
    bad_bom = bytearray(shb())
    bad_bom[8:12] = b"\x00\x00\x00\x00"
    with pytest.raises(CaptureError, match="byte-order magic"):
        PcapngReader.from_start(bytes(bad_bom))
    with pytest.raises(CaptureError, match="version 2"):
        PcapngReader.from_start(shb(major=2))
