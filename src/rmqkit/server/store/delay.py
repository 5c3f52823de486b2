"""Delayed messages in the store: the DELAY property sends a message to SCHEDULE_TOPIC_XXXX.

As RocketMQ's CommitLog does, a message with delay level L (1..N) is stored in queue L-1 of the
schedule topic, with its real topic and queue in REAL_TOPIC / REAL_QID; its ConsumeQueue tag code
is the time it is due (store time + the level's delay), which the broker's schedule service reads
to move it back to its real topic. Levels come from `messageDelayLevel`
("1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h"; units ms, s, m, h, d).
A level wins over the arbitrary-time TIMER_* properties (`store/timer.py`), which are dropped, as
RocketMQ 5 does; without a level they pass through here untouched.
"""

from __future__ import annotations

import re

from rmqkit.common.names import SCHEDULE_TOPIC
from rmqkit.common.properties import NAME_VALUE_SEPARATOR, PROPERTY_SEPARATOR, Prop, find_property
from rmqkit.protocol.codes import TRANSACTION_TYPE_MASK, SysFlag
from rmqkit.server.store.message import MessageToStore
from rmqkit.server.store.results import PutResult, PutStatus

DEFAULT_DELAY_LEVELS = "1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h"
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_LEVEL = re.compile(r"^(\d+)(ms|s|m|h|d)$")
DELAY_MARK = Prop.DELAY_TIME_LEVEL + NAME_VALUE_SEPARATOR
"""How a message's properties ask for a delay level."""
_TIMER_MARKS = tuple(
    k + NAME_VALUE_SEPARATOR
    for k in (Prop.TIMER_DELIVER_MS, Prop.TIMER_DELAY_SEC, Prop.TIMER_DELAY_MS)
)


def parse_delay_levels(text: str) -> list[int]:
    """`"1s 5s 1m"` -> delays in ms; raises ValueError naming a bad item."""
    out = []
    for item in text.split():
        m = _LEVEL.match(item.strip())
        if m is None:
            raise ValueError(
                f"messageDelayLevel item {item!r} is not a number followed by ms, s, m, h or d"
            )
        out.append(int(m.group(1)) * _UNIT_MS[m.group(2)])
    if not out:
        raise ValueError("messageDelayLevel is empty")
    return out


def route_delayed(msg: MessageToStore, levels_ms: list[int]) -> MessageToStore | PutResult:
    """The message as stored: in the schedule topic when it asks for a delay; a refusal for a
    DELAY that is not a number. Levels past the last are clamped to it, as RocketMQ does, and
    TIMER_* properties beside a level are dropped."""
    props = msg.properties
    if DELAY_MARK not in props:
        return msg
    ttype = msg.sys_flag & TRANSACTION_TYPE_MASK
    if ttype not in (0, SysFlag.TRANSACTION_COMMIT):
        return msg  # half messages are delayed by the transaction check, not here
    raw = find_property(props, Prop.DELAY_TIME_LEVEL)
    try:
        level = int(raw or "0")
    except ValueError:
        return PutResult(
            PutStatus.MESSAGE_ILLEGAL, remark=f"the DELAY property {raw!r} is not a delay level"
        )
    if level <= 0:
        return msg
    if level > len(levels_ms):
        level = len(levels_ms)
        props = _replace_property(props, Prop.DELAY_TIME_LEVEL, str(level))
    if "TIMER_" in props and any(mark in props for mark in _TIMER_MARKS):
        props = _drop_properties(props, _TIMER_MARKS)  # the level wins, as in RocketMQ 5
    if props and not props.endswith(PROPERTY_SEPARATOR):
        props += PROPERTY_SEPARATOR
    props += (
        f"{Prop.REAL_TOPIC}{NAME_VALUE_SEPARATOR}{msg.topic}{PROPERTY_SEPARATOR}"
        f"{Prop.REAL_QUEUE_ID}{NAME_VALUE_SEPARATOR}{msg.queue_id}{PROPERTY_SEPARATOR}"
    )
    return MessageToStore(
        SCHEDULE_TOPIC, level - 1, msg.body, props, msg.flag, msg.sys_flag, msg.born_timestamp,
        msg.born_host, msg.reconsume_times, msg.prepared_transaction_offset, msg.body_crc,
        msg.wait_store_ok,
    )  # fmt: skip


def _replace_property(props: str, key: str, value: str) -> str:
    parts = []
    for item in props.split(PROPERTY_SEPARATOR):
        if item.startswith(key + NAME_VALUE_SEPARATOR):
            item = key + NAME_VALUE_SEPARATOR + value
        parts.append(item)
    return PROPERTY_SEPARATOR.join(parts)


def _drop_properties(props: str, marks: tuple[str, ...]) -> str:
    kept = [item for item in props.split(PROPERTY_SEPARATOR) if not item.startswith(marks)]
    return PROPERTY_SEPARATOR.join(kept)


def deliver_at(store_timestamp: int, queue_id: int, levels_ms: list[int]) -> int:
    """The ConsumeQueue tag code of a schedule-topic message: when it is due (ms)."""
    return store_timestamp + levels_ms[min(max(queue_id, 0), len(levels_ms) - 1)]
