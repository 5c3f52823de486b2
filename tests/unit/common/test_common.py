"""Properties strings, Java hashing and name rules."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from rmqkit.common.hashing import java_string_hash, tags_code
from rmqkit.common.names import topic_problem
from rmqkit.common.properties import decode_properties, encode_properties, find_property


def _java_hash_reference(s: str) -> int:
    raw = s.encode("utf-16-be")
    h = 0
    for i in range(0, len(raw), 2):
        h = (31 * h + int.from_bytes(raw[i : i + 2], "big")) & 0xFFFFFFFF
    return h - (1 << 32) if h >= 1 << 31 else h


def test_java_hash_known_values() -> None:
    # Values Java prints for "TagA".hashCode(), "".hashCode(), "hello".hashCode().
    assert java_string_hash("TagA") == 2598919
    assert java_string_hash("") == 0
    assert java_string_hash("hello") == 99162322
    assert java_string_hash("polygenelubricants") == -2147483648
    assert tags_code(None) == 0 and tags_code("") == 0


@given(st.text(max_size=600))
def test_java_hash_matches_reference_for_any_text(s: str) -> None:
    assert java_string_hash(s) == _java_hash_reference(s)


def test_properties_round_trip_and_trailing_separator() -> None:
    props = {"TAGS": "a", "KEYS": "k1 k2", "UNIQ_KEY": "X"}
    text = encode_properties(props)
    assert text == "TAGS\x01a\x02KEYS\x01k1 k2\x02UNIQ_KEY\x01X\x02"
    assert decode_properties(text) == props
    assert decode_properties("TAGS\x01a") == {"TAGS": "a"}  # no trailing separator
    assert decode_properties("\x02\x02junk\x02\x01v\x02") == {}  # lenient


def test_find_property_matches_whole_keys_only() -> None:
    text = encode_properties({"XTAGS": "no", "TAGS": "yes"})
    assert find_property(text, "TAGS") == "yes"
    assert find_property(text, "KEYS") is None
    assert find_property("TAGS\x01last", "TAGS") == "last"


def test_topic_rules() -> None:
    assert topic_problem("Topic_A-1") is None
    assert topic_problem("%RETRY%group") is None
    assert "illegal" in (topic_problem("bad topic") or "")
    assert "illegal" in (topic_problem("tópico") or "")
    assert "127" in (topic_problem("t" * 128) or "")
    assert "empty" in (topic_problem("") or "")
