"""HeartbeatData, the body of HEART_BEAT: a client's id, its producer and consumer groups.

Three shapes arrive and all are accepted: Java and ali-ons send enums as names
(`"CLUSTERING"`) and `subVersion` as a number; the C++ client sends enums as integers
(consumeType 1 = PASSIVELY, messageModel 1 = CLUSTERING, 0 = BROADCASTING; consumeFromWhere 0 =
LAST_OFFSET) and `subVersion` as a string, without tagsSet/codeSet.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from rmqkit.common.java_values import json_bool, json_int
from rmqkit.protocol.command import java_string

CONSUME_TYPES = {0: "CONSUME_ACTIVELY", 1: "CONSUME_PASSIVELY", 2: "CONSUME_POP"}
MESSAGE_MODELS = {0: "BROADCASTING", 1: "CLUSTERING"}
CONSUME_FROM = {
    0: "CONSUME_FROM_LAST_OFFSET",
    1: "CONSUME_FROM_LAST_OFFSET_AND_FROM_MIN_WHEN_BOOT_FIRST",
    2: "CONSUME_FROM_MIN_OFFSET",
    3: "CONSUME_FROM_MAX_OFFSET",
    4: "CONSUME_FROM_FIRST_OFFSET",
    5: "CONSUME_FROM_TIMESTAMP",
}


class HeartbeatError(ValueError):
    """A heartbeat body that cannot be read."""


def _enum(value: Any, by_ordinal: dict[int, str], default: str) -> str:
    if value is None:
        return default
    if isinstance(value, bool):
        return default
    if isinstance(value, int):
        return by_ordinal.get(value, default)
    text = str(value).strip()
    if text.isdigit():
        return by_ordinal.get(int(text), default)
    return text.upper() or default


@dataclass(slots=True)
class SubscriptionEntry:
    topic: str
    sub_string: str = "*"
    expression_type: str = "TAG"
    sub_version: int = 0
    tags: list[str] = field(default_factory=list)
    codes: list[int] = field(default_factory=list)


@dataclass(slots=True)
class ConsumerEntry:
    group: str
    consume_type: str = "CONSUME_PASSIVELY"
    message_model: str = "CLUSTERING"
    consume_from_where: str = "CONSUME_FROM_LAST_OFFSET"
    subscriptions: list[SubscriptionEntry] = field(default_factory=list)
    unit_mode: bool = False


@dataclass(slots=True)
class HeartbeatData:
    client_id: str
    producer_groups: list[str] = field(default_factory=list)
    consumers: list[ConsumerEntry] = field(default_factory=list)

    def encode(self) -> bytes:
        return orjson.dumps(
            {
                "clientID": self.client_id,
                "producerDataSet": [{"groupName": g} for g in self.producer_groups],
                "consumerDataSet": [
                    {
                        "groupName": c.group,
                        "consumeType": c.consume_type,
                        "messageModel": c.message_model,
                        "consumeFromWhere": c.consume_from_where,
                        "unitMode": c.unit_mode,
                        "subscriptionDataSet": [
                            {
                                "topic": s.topic,
                                "subString": s.sub_string,
                                "expressionType": s.expression_type,
                                "subVersion": s.sub_version,
                                "tagsSet": s.tags,
                                "codeSet": s.codes,
                                "classFilterMode": False,
                            }
                            for s in c.subscriptions
                        ],
                    }
                    for c in self.consumers
                ],
            }
        )


def _items(d: dict[str, Any], key: str) -> list[Any]:
    """The list under `key` (none: empty); anything else there is refused."""
    value = d.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise HeartbeatError(f"heartbeat field {key} is not a list: {value!r:.60}")
    return value


def _flag(d: dict[str, Any], key: str) -> bool:
    """A boolean field (absent: false); anything fastjson would not read as one is refused."""
    value = json_bool(d.get(key))
    if value is None:
        raise HeartbeatError(f"heartbeat field {key} is not a boolean: {d.get(key)!r:.60}")
    return value


def decode_heartbeat(body: bytes | memoryview) -> HeartbeatData:
    """Any of the three observed shapes; raises `HeartbeatError` with the reason."""
    try:
        d = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise HeartbeatError(f"heartbeat body is not JSON: {exc}") from exc
    if not isinstance(d, dict):
        raise HeartbeatError("heartbeat body is not a JSON object")
    client_id = java_string(d.get("clientID"))
    if not client_id:
        raise HeartbeatError("heartbeat has no clientID")
    producers = [
        str(p.get("groupName"))
        for p in _items(d, "producerDataSet")
        if isinstance(p, dict) and p.get("groupName")
    ]
    consumers: list[ConsumerEntry] = []
    for c in _items(d, "consumerDataSet"):
        if not isinstance(c, dict) or not c.get("groupName"):
            continue
        subs: list[SubscriptionEntry] = []
        for s in _items(c, "subscriptionDataSet"):
            if not isinstance(s, dict) or not s.get("topic"):
                continue
            subs.append(
                SubscriptionEntry(
                    topic=str(s["topic"]),
                    sub_string=str(s.get("subString") or "*"),
                    expression_type=str(s.get("expressionType") or "TAG").upper(),
                    sub_version=json_int(s.get("subVersion")) or 0,
                    tags=[str(t) for t in _items(s, "tagsSet")],
                    codes=[n for x in _items(s, "codeSet") if (n := json_int(x)) is not None],
                )
            )
        consumers.append(
            ConsumerEntry(
                group=str(c["groupName"]),
                consume_type=_enum(c.get("consumeType"), CONSUME_TYPES, "CONSUME_PASSIVELY"),
                message_model=_enum(c.get("messageModel"), MESSAGE_MODELS, "CLUSTERING"),
                consume_from_where=_enum(
                    c.get("consumeFromWhere"), CONSUME_FROM, "CONSUME_FROM_LAST_OFFSET"
                ),
                subscriptions=subs,
                unit_mode=_flag(c, "unitMode"),
            )
        )
    return HeartbeatData(client_id, producers, consumers)
