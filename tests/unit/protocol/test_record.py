"""The stored record codec: golden bytes from the documented layout, and round-trips."""

from __future__ import annotations

import struct
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rmqkit.errors import CorruptRecordError, UnsupportedCompressionError
from rmqkit.protocol.codes import MESSAGE_MAGIC_V1, MESSAGE_MAGIC_V2, SysFlag
from rmqkit.protocol.record import (
    HEAD_V4,
    body_crc,
    decode_record,
    decode_records,
    encode_record,
    format_host,
    pack_host,
)


def test_ipv4_record_matches_the_documented_layout_byte_for_byte() -> None:
    body = b"hello"
    props = "TAGS\x01TagA\x02KEYS\x01k1\x02"
    rec = encode_record(
        topic="TopicTest",
        body=body,
        properties=props,
        queue_id=3,
        flag=7,
        queue_offset=42,
        physical_offset=1024,
        sys_flag=0,
        born_timestamp=1_700_000_000_000,
        born_host=pack_host("192.168.0.2", 51234),
        store_timestamp=1_700_000_000_123,
        store_host=pack_host("127.0.0.1", 10911),
        reconsume_times=2,
        prepared_transaction_offset=99,
    )
    expected = b"".join(
        [
            struct.pack(">i", len(rec)),
            struct.pack(">I", 0xDAA320A7),
            struct.pack(">i", zlib.crc32(body) & 0x7FFFFFFF),
            struct.pack(">i", 3),
            struct.pack(">i", 7),
            struct.pack(">q", 42),
            struct.pack(">q", 1024),
            struct.pack(">i", 0),
            struct.pack(">q", 1_700_000_000_000),
            bytes([192, 168, 0, 2]),
            struct.pack(">i", 51234),
            struct.pack(">q", 1_700_000_000_123),
            bytes([127, 0, 0, 1]),
            struct.pack(">i", 10911),
            struct.pack(">i", 2),
            struct.pack(">q", 99),
            struct.pack(">i", 5),
            body,
            bytes([9]),
            b"TopicTest",
            struct.pack(">h", len(props)),
            props.encode(),
        ]
    )
    assert rec == expected
    assert HEAD_V4.size == 88  # 84-byte fixed part + body length
    assert len(rec) == 84 + 4 + 5 + 1 + 9 + 2 + len(props)


def test_decode_reads_every_field_back() -> None:
    rec = encode_record(
        topic="T",
        body=b"x",
        properties="TAGS\x01a\x02UNIQ_KEY\x01U1\x02KEYS\x01k1 k2\x02",
        queue_id=1,
        queue_offset=5,
        physical_offset=77,
        store_host=pack_host("127.0.0.1", 20911),
    )
    m = decode_record(rec, check_crc=True)
    assert (m.topic, m.body, m.queue_id, m.queue_offset, m.commit_log_offset) == (
        "T",
        b"x",
        1,
        5,
        77,
    )
    assert m.tags == "a" and m.keys == ["k1", "k2"] and m.uniq_key == "U1"
    assert m.msg_id == "U1"
    assert m.offset_msg_id == "7F000001000051AF000000000000004D"
    assert m.store_size == len(rec)


def test_ipv6_hosts_set_their_sysflag_bits_and_round_trip() -> None:
    born = pack_host("::1", 40000)
    store = pack_host("fe80::1", 10911)
    rec = encode_record(topic="T6", body=b"b", born_host=born, store_host=store)
    m = decode_record(rec, check_crc=True)
    assert m.sys_flag & SysFlag.BORNHOST_V6 and m.sys_flag & SysFlag.STOREHOST_V6
    assert m.born_host == born and m.store_host == store
    assert format_host(m.store_host) == "[fe80::1]:10911"
    assert len(rec) == 84 + 24 + 4 + 1 + 1 + 2 + 2


def test_v2_magic_reads_a_two_byte_topic_length() -> None:
    rec = bytearray(encode_record(topic="AB", body=b"z"))
    # Rewrite as V2: the 1-byte topic length becomes a short, the record grows by one byte.
    at = 88 + 1
    v2 = rec[:at] + struct.pack(">h", 2) + rec[at + 1 :]
    struct.pack_into(">i", v2, 0, len(v2))
    struct.pack_into(">I", v2, 4, MESSAGE_MAGIC_V2)
    assert decode_record(v2).topic == "AB"
    assert MESSAGE_MAGIC_V1 != MESSAGE_MAGIC_V2


def test_compressed_body_is_inflated_on_decode_and_kept_as_stored_otherwise() -> None:
    raw = b"a" * 10_000
    stored = zlib.compress(raw)
    rec = encode_record(topic="T", body=stored, sys_flag=SysFlag.COMPRESSED)
    assert decode_record(rec).body == raw
    assert decode_record(rec, inflate=False).body == stored


def test_unknown_compression_type_is_a_clear_error() -> None:
    rec = encode_record(topic="T", body=b"xx", sys_flag=SysFlag.COMPRESSED | 0x200)
    with pytest.raises(UnsupportedCompressionError, match="only zlib"):
        decode_record(rec)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda b: b[:10],  # cut short
        lambda b: b"\x00" * len(b),  # zeros
        lambda b: struct.pack(">i", 5) + b[4:],  # total size too small
        lambda b: struct.pack(">i", 10_000) + b[4:],  # total size past the buffer
        lambda b: b[:4] + b"\x12\x34\x56\x78" + b[8:],  # bad magic
        lambda b: b[:84] + struct.pack(">i", 9999) + b[88:],  # body length past the record
    ],
)
def test_corrupt_bytes_raise_corrupt_record_error_only(mutate) -> None:  # type: ignore[no-untyped-def]
    rec = encode_record(topic="T", body=b"payload", properties="a\x01b\x02")
    with pytest.raises(CorruptRecordError):
        decode_record(mutate(rec), check_crc=True)


def test_crc_mismatch_is_detected_when_asked() -> None:
    rec = bytearray(encode_record(topic="T", body=b"payload"))
    rec[88] ^= 0xFF
    decode_record(rec)  # not checked: decodes
    with pytest.raises(CorruptRecordError, match="CRC"):
        decode_record(rec, check_crc=True)


def test_body_crc_is_masked_to_31_bits() -> None:
    data = b"\xff" * 100
    assert body_crc(data) == zlib.crc32(data) & 0x7FFFFFFF
    assert body_crc(data) >= 0


topics = st.text(alphabet="abcXYZ019_-%|", min_size=1, max_size=127)
prop_text = st.text(
    alphabet=st.characters(blacklist_characters="\x01\x02", blacklist_categories=("Cs",)),
    max_size=20,
)


@given(
    topic=topics,
    body=st.binary(max_size=2000),
    props=st.dictionaries(prop_text.filter(bool), prop_text, max_size=5),
    queue_id=st.integers(0, 2**31 - 1),
    qoff=st.integers(0, 2**63 - 1),
    phys=st.integers(0, 2**63 - 1),
    v6=st.booleans(),
)
def test_round_trip(topic, body, props, queue_id, qoff, phys, v6) -> None:  # type: ignore[no-untyped-def]
    from rmqkit.common.properties import encode_properties

    host = pack_host("::1" if v6 else "10.0.0.1", 1234)
    rec = encode_record(
        topic=topic,
        body=body,
        properties=encode_properties(props),
        queue_id=queue_id,
        queue_offset=qoff,
        physical_offset=phys,
        born_host=host,
        store_host=host,
    )
    m = decode_record(rec, check_crc=True)
    assert (m.topic, m.body, m.properties) == (topic, body, props)
    assert (m.queue_id, m.queue_offset, m.commit_log_offset) == (queue_id, qoff, phys)
    assert decode_records(rec + rec)[1].body == body


@given(st.binary(max_size=300))
def test_garbage_never_raises_anything_but_corrupt_record_error(data: bytes) -> None:
    try:
        decode_records(data, check_crc=True)
    except CorruptRecordError:
        pass


def test_born_host_str_formats_the_born_host() -> None:
    from rmqkit.protocol.record import StoredMessage

    host = (b"\x7f\x00\x00\x01", 5)
    m = StoredMessage("t", b"", {}, 0, 0, 0, 0, 0, 0, host, 0, host, 0, 0, 0, 0)
    assert m.born_host_str == "127.0.0.1:5"
