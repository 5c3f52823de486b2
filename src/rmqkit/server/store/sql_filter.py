"""The SQL92 message filter on the store's read path (RocketMQ's `ExpressionMessageFilter`).

The ConsumeQueue entry cannot answer an SQL condition, so every entry passes the tags-code stage
and the condition is evaluated on the record's properties (TAGS, KEYS and the user's own).
"""

from __future__ import annotations

import functools

from rmqkit.common.properties import decode_properties
from rmqkit.common.sql92 import Expression, compile_expression
from rmqkit.protocol.codes import HOST_V6_MASK, MESSAGE_MAGIC_V1, MESSAGE_MAGIC_V2
from rmqkit.protocol.record import (
    HEAD_BY_HOST_BITS,
    INT,
    MIN_RECORD_BYTES,
    PREFIX,
    SHORT,
    SYS_FLAG,
    SYS_FLAG_AT,
    USHORT,
)


def record_properties(record: memoryview) -> dict[str, str] | None:
    """The properties of the record at the start of `record`, or None when it does not decode.

    Reads only the lengths on the way to the properties (the layout is in protocol/record.py),
    so a large body is skipped rather than copied as `decode_record` would.
    """
    avail = len(record)
    if avail < MIN_RECORD_BYTES:
        return None
    size, magic, _ = PREFIX.unpack_from(record, 0)
    if (magic != MESSAGE_MAGIC_V1 and magic != MESSAGE_MAGIC_V2) or not (
        MIN_RECORD_BYTES <= size <= avail
    ):
        return None
    (sys_flag,) = SYS_FLAG.unpack_from(record, SYS_FLAG_AT)
    head = HEAD_BY_HOST_BITS[(sys_flag & HOST_V6_MASK) >> 4]
    if size < head.size + 3:
        return None
    (body_len,) = INT.unpack_from(record, head.size - INT.size)
    p = head.size + body_len
    if body_len < 0 or p + 3 > size:
        return None
    if magic == MESSAGE_MAGIC_V1:
        topic_len = record[p]
        p += 1
    else:
        (topic_len,) = SHORT.unpack_from(record, p)
        p += 2
    if topic_len < 0 or (topic_len > 127 and magic == MESSAGE_MAGIC_V1):
        return None
    if p + topic_len + 2 > size or not record[p : p + topic_len].tobytes().isascii():
        return None  # decode_record refuses a non-ASCII topic, so the filter does too
    p += topic_len
    (props_len,) = USHORT.unpack_from(record, p)
    p += 2
    if p + props_len != size:
        return None
    try:
        text = str(record[p : p + props_len], "utf-8")
    except UnicodeDecodeError:
        return None
    return decode_properties(text)


class SqlFilter:
    """A `MessageFilter` for an SQL92 subscription: delivers records whose properties match."""

    __slots__ = ("expression",)

    def __init__(self, expression: Expression) -> None:
        self.expression = expression

    def matches_tags_code(self, tags_code: int) -> bool:
        return True  # the tags code cannot decide an SQL condition; the record will

    def matches_record(self, record: memoryview) -> bool:
        props = record_properties(record)
        return props is not None and self.expression.evaluate(props)

    def __repr__(self) -> str:
        return f"SqlFilter({self.expression.text!r})"


@functools.lru_cache(maxsize=256)
def sql_filter_for(expression: str) -> SqlFilter:
    """The filter of a subscription expression, compiled once per distinct text.

    Raises:
        SqlParseError: the expression is not valid SQL92 (not cached: RocketMQ refuses the
            subscription, and a corrected text is a different key anyway).
    """
    return SqlFilter(compile_expression(expression))
