"""SqlFilter: SQL92 subscriptions evaluated on real records, alone and through the store."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rmqkit.common.properties import encode_properties
from rmqkit.common.sql92 import SqlParseError
from rmqkit.errors import CorruptRecordError
from rmqkit.protocol.codes import MESSAGE_MAGIC_V2
from rmqkit.protocol.record import decode_record, encode_record, pack_host
from rmqkit.server.store import FileMessageStore, GetStatus, MessageFilter
from rmqkit.server.store.sql_filter import SqlFilter, record_properties, sql_filter_for

from .conftest import msg


def record(body: bytes = b"hello", **props: str) -> memoryview:
    return memoryview(encode_record(topic="T", body=body, properties=encode_properties(props)))


def test_matches_on_record_properties_including_tags() -> None:
    f = sql_filter_for("TAGS IN ('TagA', 'TagB') AND amount > 100")
    assert f.matches_record(record(TAGS="TagA", amount="150"))
    assert not f.matches_record(record(TAGS="TagC", amount="150"))
    assert not f.matches_record(record(TAGS="TagA", amount="50"))
    assert not f.matches_record(record(TAGS="TagA"))  # amount missing: unknown
    assert not f.matches_record(record(TAGS="TagA", amount="lots"))  # not a number: no match
    assert sql_filter_for("TAGS IS NULL").matches_record(record(amount="1"))


def test_every_tags_code_passes_to_the_record_stage() -> None:
    f = sql_filter_for("a = 1")
    assert f.matches_tags_code(0) and f.matches_tags_code(-123456)


def test_is_a_message_filter_and_cached_by_text() -> None:
    f: MessageFilter = sql_filter_for("a = 'x'")
    assert isinstance(f, SqlFilter)
    assert sql_filter_for("a = 'x'") is f
    assert sql_filter_for("a = 'y'") is not f
    assert repr(f) == "SqlFilter(\"a = 'x'\")"


def test_invalid_expression_raises_parse_error() -> None:
    with pytest.raises(SqlParseError) as info:
        sql_filter_for("a = ")
    assert info.value.position == 4


def test_records_that_do_not_decode_never_match() -> None:
    f = sql_filter_for("a IS NULL")  # would match any decodable record without `a`
    good = bytes(record())
    assert f.matches_record(memoryview(good))
    assert not f.matches_record(memoryview(b""))
    assert not f.matches_record(memoryview(good[:-1]))
    assert not f.matches_record(memoryview(b"\x00" * len(good)))
    bad_magic = bytearray(good)
    bad_magic[4:8] = b"\xde\xad\xbe\xef"
    assert not f.matches_record(memoryview(bytes(bad_magic)))
    bad_utf8 = bytearray(encode_record(topic="T", body=b"", properties="a\x01\xff\x02"))
    bad_utf8[-2] = 0xFF
    assert not f.matches_record(memoryview(bytes(bad_utf8)))


def test_reads_ipv6_hosts_big_bodies_and_v2_records() -> None:
    props = encode_properties({"a": "7", "TAGS": "t"})
    v6 = encode_record(
        topic="T", body=b"b" * 100_000, properties=props, born_host=pack_host("::1", 1)
    )
    assert sql_filter_for("a = 7 AND TAGS = 't'").matches_record(memoryview(v6))
    # The same record with a V2 header: 2-byte topic length.
    v1 = encode_record(topic="Topic", body=b"xyz", properties=props)
    head = len(v1) - len(props) - 2 - len("Topic") - 1
    v2 = bytearray(v1[:head]) + b"\x00" + v1[head:]
    v2[0:4] = len(v2).to_bytes(4, "big")
    v2[4:8] = MESSAGE_MAGIC_V2.to_bytes(4, "big")
    assert decode_record(bytes(v2)).topic == "Topic"
    assert record_properties(memoryview(bytes(v2))) == {"a": "7", "TAGS": "t"}


_CHAR = st.characters(codec="utf-8", exclude_characters="\x01\x02")
_KEY = st.text(_CHAR, min_size=1, max_size=8)
_VALUE = st.text(_CHAR, max_size=12)


@given(st.dictionaries(_KEY, _VALUE, max_size=6), st.binary(max_size=64))
def test_properties_read_equals_decode_record(props: dict[str, str], body: bytes) -> None:
    rec = encode_record(topic="T", body=body, properties=encode_properties(props))
    assert record_properties(memoryview(rec)) == decode_record(rec).properties == props


@given(st.data())
def test_damaged_records_never_raise(data: st.DataObject) -> None:
    rec = bytearray(bytes(record(b"body", a="1", TAGS="x")))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(rec) - 1))
        rec[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(rec)))
    view = memoryview(bytes(rec[:cut]))
    props = record_properties(view)  # must not raise
    try:
        decoded = decode_record(view, inflate=False).properties
    except (CorruptRecordError, IndexError):  # IndexError: decode_record's own edge, not ours
        return
    assert props == decoded


async def test_pull_through_the_file_store(store: FileMessageStore) -> None:
    for i in range(10):
        tag = "even" if i % 2 == 0 else "odd"
        await store.put_message(msg(TAGS=tag, i=str(i)))
    await store.put_message(msg(TAGS="even"))  # no `i`: unknown, filtered out
    store.reput.drain()  # type: ignore[union-attr]
    got = store.get_message("T", 0, 0, 32, sql_filter_for("TAGS = 'even' AND i >= 4"))
    assert got.status is GetStatus.FOUND
    assert got.queue_offsets == [4, 6, 8]
    assert [decode_record(r).properties["i"] for r in got.records] == ["4", "6", "8"]
    none = store.get_message("T", 0, 0, 32, sql_filter_for("i > 100"))
    assert none.status is GetStatus.NO_MATCHED_MESSAGE and none.next_begin_offset == 11
