"""Offset message ids and SEND_BATCH_MESSAGE bodies."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rmqkit.errors import CorruptRecordError
from rmqkit.protocol.batch import BatchEntry, decode_batch, encode_batch
from rmqkit.protocol.message_id import decode_offset_msg_id, encode_offset_msg_id
from rmqkit.protocol.record import pack_host


def test_offset_msg_id_matches_rocketmq_example() -> None:
    # 127.0.0.1:20911, offset 0, as the reference broker reports it.
    host = pack_host("127.0.0.1", 20911)
    assert encode_offset_msg_id(host, 0) == "7F000001000051AF0000000000000000"
    assert decode_offset_msg_id("7F000001000051AF0000000000000000") == (host, 0)


def test_ipv6_offset_msg_id_has_56_hex_chars() -> None:
    host = pack_host("::1", 10911)
    mid = encode_offset_msg_id(host, 123456)
    assert len(mid) == 56 and mid == mid.upper()
    assert decode_offset_msg_id(mid) == (host, 123456)


@pytest.mark.parametrize("bad", ["", "XYZ", "7F000001000051AF000000000000000G", "00" * 17])
def test_bad_offset_msg_ids_are_refused_clearly(bad: str) -> None:
    with pytest.raises(CorruptRecordError):
        decode_offset_msg_id(bad)


@pytest.mark.parametrize(
    "client_id",
    [
        "7F0000012C115BAF96BE6FE6DE37EFA4",  # a UNIQ_KEY: ip, pid 0x2C11, ... (port 739,335,087)
        "7F000001000051AFFFFFFFFFFFFFFFFF",  # offset -1
    ],
)
def test_an_id_that_names_no_port_and_offset_is_not_an_offset_id(client_id: str) -> None:
    with pytest.raises(CorruptRecordError, match="is not an offset message id"):
        decode_offset_msg_id(client_id)


def test_batch_body_layout() -> None:
    body = encode_batch([BatchEntry(b"ab", "TAGS\x01x\x02", flag=3)])
    assert (
        body
        == struct.pack(">iiiii", 20 + 2 + 2 + 7, 0, 0, 3, 2)
        + b"ab"
        + struct.pack(">h", 7)
        + b"TAGS\x01x\x02"
    )


@given(
    st.lists(
        st.builds(BatchEntry, st.binary(max_size=100), st.text(max_size=30), st.integers(0, 99)),
        max_size=10,
    )
)
def test_batch_round_trip(entries: list[BatchEntry]) -> None:
    assert decode_batch(encode_batch(entries)) == entries


@given(st.binary(max_size=200))
def test_garbage_batch_raises_only_corrupt_record_error(data: bytes) -> None:
    try:
        decode_batch(data)
    except CorruptRecordError:
        pass


def test_batch_from_a_view_decodes_as_from_bytes() -> None:
    body = encode_batch([BatchEntry(b"ab", "TAGS\x01x\x02", 1), BatchEntry(b"", "", 2)])
    assert decode_batch(memoryview(body)) == decode_batch(body) == [
        BatchEntry(b"ab", "TAGS\x01x\x02", 1),
        BatchEntry(b"", "", 2),
    ]


def test_a_negative_properties_length_is_corrupt() -> None:
    # properties_length 0x8000 is -32768 as Java's short: never a length.
    body = struct.pack(">iiiii", 20 + 2, 0, 0, 0, 0) + struct.pack(">H", 0x8000)
    with pytest.raises(CorruptRecordError, match="properties do not fit"):
        decode_batch(body)
