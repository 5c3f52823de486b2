"""Replication frames: the byte layouts, round trips cut at any byte, and what is refused."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rmqkit.protocol.ha import (
    REPORT,
    TRANSFER_HEADER,
    HAFrameError,
    ReportDecoder,
    Transfer,
    TransferDecoder,
    encode_report,
    encode_transfer,
    encode_transfer_header,
)


def test_report_is_one_big_endian_signed_long() -> None:
    assert REPORT.size == 8
    assert encode_report(0x0102030405060708) == bytes.fromhex("0102030405060708")
    assert encode_report(0) == bytes(8)


def test_transfer_header_is_offset_then_size() -> None:
    assert TRANSFER_HEADER.size == 12
    assert encode_transfer_header(1 << 32, 258) == bytes.fromhex("000000010000000000000102")
    assert encode_transfer(5, b"abc") == bytes.fromhex("000000000000000500000003") + b"abc"


def test_a_heartbeat_is_a_header_with_size_zero() -> None:
    (t,) = TransferDecoder().feed(encode_transfer_header(4096, 0))
    assert t == Transfer(4096, b"") and t.heartbeat and t.end == 4096


def _cut(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


transfers = st.lists(
    st.tuples(st.integers(0, 2**62), st.binary(max_size=300)), min_size=1, max_size=12
)


@given(frames=transfers, cuts=st.lists(st.integers(0, 10_000), max_size=20))
def test_transfers_survive_any_fragmentation(
    frames: list[tuple[int, bytes]], cuts: list[int]
) -> None:
    stream = b"".join(encode_transfer(o, b) for o, b in frames)
    d = TransferDecoder(max_body_bytes=300)
    got: list[Transfer] = []
    for piece in _cut(stream, cuts):
        got += d.feed(piece)
    assert [(t.offset, t.body) for t in got] == frames
    assert d.buffered == 0


@given(offsets=st.lists(st.integers(0, 2**63 - 1), max_size=20), cuts=st.lists(st.integers()))
def test_reports_survive_any_fragmentation(offsets: list[int], cuts: list[int]) -> None:
    stream = b"".join(encode_report(o) for o in offsets)
    d = ReportDecoder()
    got: list[int] = []
    for piece in _cut(stream, cuts):
        got += d.feed(piece)
    assert got == offsets and d.buffered == 0


def test_a_partial_transfer_waits_for_its_body() -> None:
    d = TransferDecoder()
    frame = encode_transfer(100, b"0123456789")
    assert d.feed(frame[:11]) == [] and d.buffered == 11
    assert d.feed(frame[11:15]) == [] and d.buffered == 15
    assert d.feed(frame[15:] + encode_transfer(110, b"x")[:3]) == [Transfer(100, b"0123456789")]
    assert d.buffered == 3


@pytest.mark.parametrize(
    ("header", "why"),
    [
        (encode_transfer_header(0, -1), "outside 0..64"),
        (encode_transfer_header(0, 65), "outside 0..64"),
        (encode_transfer_header(-8, 0), "negative"),
    ],
)
def test_impossible_transfer_headers_are_refused(header: bytes, why: str) -> None:
    with pytest.raises(HAFrameError, match=why):
        TransferDecoder(max_body_bytes=64).feed(header)


def test_a_negative_report_is_refused() -> None:
    with pytest.raises(HAFrameError, match="negative"):
        ReportDecoder().feed(encode_report(7) + encode_report(-1))
