"""producers.pcap: the file header, record indexing across chunks, and corrupt records."""

from __future__ import annotations

import pytest

from core.errors import CaptureError, TruncatedRecord
from producers.frames import ParseResult, Reason
from producers.pcap import PcapReader, is_pcap, parse_header
from tests.producers.pktbuild import ether, feed, ipv4, pcap_file, pcap_header, pcap_record, tcp, udp

T0 = 1_650_000_000_123_456_789
FRAMES = [ether(ipv4(tcp(1000 + i, 23))) for i in range(5)]


def read_all(data: bytes, chunk: int | None = None, **kwargs: int) -> tuple[list[ParseResult], PcapReader]:
    """Feed a whole file to a reader, ``chunk`` bytes at a time (all at once by default)."""
    reader, start = PcapReader.from_start(data, **kwargs)
    return feed(reader, start, data, chunk), reader


def offsets(results: list[ParseResult]) -> list[int]:
    return [int(x) for r in results for x in r.frames.rec_off]


def problems(results: list[ParseResult]) -> list[tuple[str, int]]:
    return [(str(p.reason), p.offset) for r in results for p in r.problems]


@pytest.mark.parametrize(("big", "nano"), [(False, False), (True, False), (False, True), (True, True)])
def test_both_byte_orders_and_both_resolutions_read_the_same_frames(big: bool, nano: bool) -> None:
    data = pcap_file(FRAMES, big=big, nano=nano, t0=T0)
    results, reader = read_all(data)
    assert reader.header.big_endian is big and reader.header.nanosecond is nano
    frames = results[0].frames
    assert len(frames) == 5 and frames.caplen.tolist() == [len(f) for f in FRAMES]
    expected_t0 = T0 if nano else T0 // 1000 * 1000
    assert frames.ts.tolist() == [expected_t0 + i * 1_000_000 for i in range(5)]
    got = [bytes(frames.data[o : o + c]) for o, c in zip(frames.data_off, frames.caplen, strict=True)]
    assert got == FRAMES
    assert offsets(results) == [24 + sum(16 + len(f) for f in FRAMES[:i]) for i in range(5)]


def test_the_link_type_is_taken_per_file() -> None:
    results, reader = read_all(pcap_file([ipv4(udp(), proto=17)], linktype=101))
    assert reader.header.linktype == 101 and results[0].frames.linktype.tolist() == [101]


def test_fcs_bits_in_the_link_type_field_are_separated() -> None:
    header = parse_header(pcap_header(1 | (1 << 28) | (2 << 29)))
    assert header.linktype == 1 and header.fcs_len == 4


def test_magic_detection() -> None:
    assert is_pcap(pcap_header()) and is_pcap(pcap_header(big=True, nano=True))
    assert not is_pcap(b"\x0a\x0d\x0d\x0a") and not is_pcap(b"")


def test_a_file_that_is_not_pcap_raises_capture_error() -> None:
    with pytest.raises(CaptureError, match="not a pcap file"):
        parse_header(b"GIF89a" + bytes(30))


def test_a_file_header_cut_short_raises_truncated_record() -> None:
    with pytest.raises(TruncatedRecord, match="10 of 24"):
        parse_header(pcap_header()[:10])


def test_an_unknown_major_version_raises_capture_error() -> None:
    with pytest.raises(CaptureError, match=r"version 3\.0"):
        parse_header(pcap_header(version=(3, 0)))


@pytest.mark.parametrize("chunk", [1, 7, 16, 50, 61, 1000])
def test_records_split_across_chunks_are_read_once_each(chunk: int) -> None:
    data = pcap_file(FRAMES)
    whole, _ = read_all(data)
    pieces, _ = read_all(data, chunk)
    assert offsets(pieces) == offsets(whole) and problems(pieces) == []


def test_a_file_with_only_a_header_has_no_frames() -> None:
    results, _ = read_all(pcap_header())
    assert offsets(results) == [] and problems(results) == []


def test_a_last_record_cut_short_counts_truncated_record_and_keeps_the_rest() -> None:
    data = pcap_file(FRAMES)
    results, _ = read_all(data[:-10])
    last = len(data) - 16 - len(FRAMES[-1])
    assert len(offsets(results)) == 4
    assert problems(results) == [("truncated_record", last)]
    assert "capture ends" in results[-1].problems[0].detail


def test_a_file_ending_inside_a_record_header_counts_truncated_record() -> None:
    data = pcap_file(FRAMES)
    results, _ = read_all(data + b"\x01\x02\x03")
    assert len(offsets(results)) == 5 and problems(results) == [("truncated_record", len(data))]
    assert "record header" in results[-1].problems[0].detail


def corrupt_file(big: bool = False) -> tuple[bytes, int]:
    """Two good records, one with caplen 0x7fffffff, then three good records."""
    good = [pcap_record(f, T0 + i * 1000, big=big) for i, f in enumerate(FRAMES)]
    bad = pcap_record(FRAMES[0], T0, caplen=0x7FFFFFFF, big=big)
    data = pcap_header(big=big) + good[0] + good[1] + bad + good[2] + good[3] + good[4]
    return data, 24 + len(good[0]) + len(good[1])


@pytest.mark.parametrize(
    ("chunk", "big"), [(None, False), (33, False), (100, False), (None, True), (57, True)]
)
def test_a_corrupt_record_length_is_skipped_and_reading_resumes_at_the_next_record(
    chunk: int | None, big: bool
) -> None:
    data, bad_at = corrupt_file(big)
    results, _ = read_all(data, chunk)
    assert problems(results) == [("bad_record_length", bad_at)]
    bad_len = 16 + len(FRAMES[0])
    got = offsets(results)
    assert len(got) == 5 and got[2] == bad_at + bad_len
    assert not any(r.stopped for r in results)


def test_caplen_above_the_snaplen_is_a_bad_record_length() -> None:
    data = pcap_file([FRAMES[0], ether(ipv4(tcp(), options=bytes(40))), FRAMES[1]], snaplen=60)
    results, _ = read_all(data)
    assert [p[0] for p in problems(results)] == ["bad_record_length"]
    assert len(offsets(results)) == 2


def test_garbage_until_the_end_counts_resync_failed_and_keeps_the_packets_before() -> None:
    data = pcap_file(FRAMES[:2]) + pcap_record(FRAMES[0], T0, caplen=1 << 30) + b"\xff" * 5000
    results, _ = read_all(data)
    assert len(offsets(results)) == 2
    assert [p[0] for p in problems(results)] == ["bad_record_length", "resync_failed"]


def test_garbage_beyond_the_resync_limit_stops_the_file() -> None:
    data = (
        pcap_file(FRAMES[:2])
        + pcap_record(FRAMES[0], T0, caplen=1 << 30)
        + b"\xff" * 5000
        + pcap_file(FRAMES)[24:]
    )
    results, _ = read_all(data, 1024, resync_limit=2048)
    assert results[-1].stopped and len(offsets(results)) == 2
    assert problems(results)[-1][0] == Reason.RESYNC_FAILED
    assert "rest of the file is skipped" in results[-1].problems[-1].detail


def test_resync_rejects_a_candidate_whose_time_is_far_from_the_last_good_record() -> None:
    # After the bad record, a fake header (plausible lengths, but a year later) precedes the real one.
    fake = pcap_record(b"", T0 + 365 * 86400 * 10**9)
    data = (
        pcap_file(FRAMES[:1], t0=T0)
        + pcap_record(FRAMES[0], T0, caplen=1 << 30)[:16]
        + fake
        + pcap_record(FRAMES[1], T0 + 5000)
    )
    results, _ = read_all(data)
    assert len(offsets(results)) == 2 and offsets(results)[1] == len(data) - 16 - len(FRAMES[1])
