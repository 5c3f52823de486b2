"""Remoting frames and headers: the reference bytes, fragmentation, binary headers, garbage."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rmqkit.common.java_values import parse_bool, parse_int
from rmqkit.protocol.codes import RequestCode, ResponseCode, SerializeType
from rmqkit.protocol.command import (
    FLAG_ONEWAY,
    RemotingCommand,
    encode_binary_header,
    java_string,
)
from rmqkit.protocol.frame import FrameDecoder, FrameError, encode_frame

# ali-ons' GET_ROUTEINFO_BY_TOPIC for topic "T", opaque 7 (from the protocol reference).
ALI_ONS_ROUTE = (
    bytes.fromhex("0000005e0000005a")
    + b'{"code":105,"language":"JAVA","opaque":7,"flag":0,"version":121,"extFields":{"topic":"T"}}'
)


def test_decodes_the_reference_request() -> None:
    (cmd,) = FrameDecoder().feed(ALI_ONS_ROUTE)
    assert cmd.code == RequestCode.GET_ROUTEINFO_BY_TOPIC and cmd.opaque == 7
    assert cmd.ext_fields == {"topic": "T"} and cmd.language == "JAVA" and cmd.version == 121
    assert not cmd.is_response and cmd.body == b""


def test_response_frame_layout() -> None:
    req = RemotingCommand(code=105, opaque=9)
    resp = req.response(ResponseCode.SUCCESS, remark="ok", body=b"{}")
    frame = encode_frame(resp)
    length, type_and_len = struct.unpack_from(">ii", frame)
    assert length == len(frame) - 4 and type_and_len >> 24 == SerializeType.JSON
    (back,) = FrameDecoder().feed(frame)
    assert (back.code, back.opaque, back.flag, back.remark, back.body) == (0, 9, 1, "ok", b"{}")


def test_fragmented_and_coalesced_frames() -> None:
    frames = b"".join(
        encode_frame(RemotingCommand(code=10, opaque=i, body=bytes([i]) * i)) for i in range(5)
    )
    d = FrameDecoder()
    got = []
    for b in frames:
        got += d.feed(bytes([b]))
    assert [c.opaque for c in got] == [0, 1, 2, 3, 4] and d.buffered == 0
    assert [c.opaque for c in FrameDecoder().feed(frames + frames[:7])] == [0, 1, 2, 3, 4]


def test_numbers_and_booleans_in_ext_fields_become_java_strings() -> None:
    header = b'{"code":11,"opaque":1,"extFields":{"queueId":0,"k":false,"n":32,"s":"x","z":null}}'
    frame = struct.pack(">ii", 4 + len(header), len(header)) + header
    (cmd,) = FrameDecoder().feed(frame)
    assert cmd.ext_fields == {"queueId": "0", "k": "false", "n": "32", "s": "x"}
    assert java_string(True) == "true" and java_string(1.5) == "1.5"
    assert parse_bool("TRUE") and not parse_bool("1") and not parse_bool(None)
    assert parse_int(" 12 ") == 12 and parse_int("3.0") == 3 and parse_int("x", -1) == -1


def test_binary_rocketmq_header_is_read() -> None:
    cmd = RemotingCommand(code=34, opaque=5, flag=FLAG_ONEWAY, remark="hi", ext_fields={"a": "1"})
    header = encode_binary_header(cmd)
    frame = struct.pack(">ii", 4 + len(header) + 3, (1 << 24) | len(header)) + header + b"xyz"
    (back,) = FrameDecoder().feed(frame)
    assert (back.code, back.opaque, back.remark, back.ext_fields, back.body) == (
        34, 5, "hi", {"a": "1"}, b"xyz",
    )  # fmt: skip
    assert back.is_oneway and back.serialize_type == SerializeType.ROCKETMQ


@pytest.mark.parametrize(
    "frame",
    [
        struct.pack(">i", 2) + b"\0\0",  # shorter than its own header word
        struct.pack(">i", 64 * 1024 * 1024),  # over the maximum frame size
        struct.pack(">ii", 8, 50) + b"\0" * 4,  # header longer than the frame
        struct.pack(">ii", 6, 2) + b"{}",  # JSON without a code
        struct.pack(">ii", 7, 3) + b"[1]",  # not an object
        struct.pack(">ii", 7, (9 << 24) | 3) + b"abc",  # unknown serialize type
        struct.pack(">ii", 7, 3) + b"\xff\xfe\x00",  # not JSON at all
    ],
)
def test_bad_frames_raise_frame_error(frame: bytes) -> None:
    with pytest.raises(FrameError):
        FrameDecoder().feed(frame)


def test_max_frame_size_is_configurable() -> None:
    big = encode_frame(RemotingCommand(code=10, body=b"x" * 2000))
    with pytest.raises(FrameError, match="outside"):
        FrameDecoder(max_frame_bytes=1000).feed(big)


@given(st.binary(max_size=400))
def test_garbage_raises_only_frame_error(data: bytes) -> None:
    try:
        FrameDecoder(max_frame_bytes=1 << 20).feed(data)
    except FrameError:
        pass


@given(
    code=st.integers(-32768, 32767),
    opaque=st.integers(-(2**31), 2**31 - 1),
    ext=st.dictionaries(st.text(max_size=10), st.text(max_size=20), max_size=5),
    body=st.binary(max_size=200),
    remark=st.none() | st.text(max_size=20),
)
def test_json_round_trip(code, opaque, ext, body, remark) -> None:  # type: ignore[no-untyped-def]
    cmd = RemotingCommand(code=code, opaque=opaque, ext_fields=ext, body=body, remark=remark)
    (back,) = FrameDecoder().feed(encode_frame(cmd))
    assert (back.code, back.opaque, back.ext_fields, back.body, back.remark) == (
        code, opaque, ext, body, remark,
    )  # fmt: skip
