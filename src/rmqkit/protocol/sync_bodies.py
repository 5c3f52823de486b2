"""JSON bodies a slave fetches from its master every round (RocketMQ `SlaveSynchronize`).

GET_ALL_TOPIC_CONFIG answers `TopicConfigSerializeWrapper`, GET_ALL_SUBSCRIPTIONGROUP_CONFIG
`SubscriptionGroupWrapper`, GET_ALL_CONSUMER_OFFSET `ConsumerOffsetSerializeWrapper` and
GET_ALL_DELAY_OFFSET the content of `delayOffset.json`. rmqkit writes standard JSON; it reads
fastjson's too, whose integer-keyed maps come out with bare keys (`{"offsetTable":{0:12}}`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from rmqkit.common.java_values import json_int
from rmqkit.common.topic import DataVersion, TopicConfig
from rmqkit.common.types import GroupName, QueueId, QueueOffset, TopicName
from rmqkit.protocol.route import BodyError, loads_lenient

OffsetKey = str
"""`<topic>@<group>`, the key of RocketMQ's consumer offset table."""
DelayLevel = int
"""1-based delay level; level `n` is queue `n - 1` of SCHEDULE_TOPIC_XXXX."""


def _object(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BodyError(f"{what} must be a JSON object, not {type(value).__name__}")
    return value


def _integer(value: Any, what: str, bits: int = 64) -> int:
    """A number as Java reads one into a `long` (`bits=32`: an `int`)."""
    n = json_int(value, bits)
    if n is None:
        java = "int" if bits == 32 else "long"
        raise BodyError(f"{what} must be an integer (a Java {java}), not {value!r:.40}")
    return n


def _data_version(value: Any) -> DataVersion:
    d = _object(value, "dataVersion")
    return DataVersion(
        _integer(d.get("stateVersion", 0), "dataVersion.stateVersion"),
        _integer(d.get("timestamp", 0), "dataVersion.timestamp"),
        _integer(d.get("counter", 0), "dataVersion.counter"),
    )


def decode_topic_configs(
    body: bytes | memoryview | str,
) -> tuple[dict[TopicName, TopicConfig], DataVersion]:
    """GET_ALL_TOPIC_CONFIG's body: every topic of the master, and its topic data version."""
    d = _object(loads_lenient(body, "TopicConfigSerializeWrapper"), "topic config body")
    topics: dict[TopicName, TopicConfig] = {}
    for name, cfg in _object(d.get("topicConfigTable"), "topicConfigTable").items():
        try:
            topics[str(name)] = TopicConfig.from_json(_object(cfg, f"topic {name!r}"))
        except (KeyError, TypeError, ValueError) as exc:
            raise BodyError(f"topicConfigTable[{name!r}]: {exc!r}") from None
    return topics, _data_version(d.get("dataVersion"))


def decode_subscription_groups(
    body: bytes | memoryview | str,
) -> tuple[dict[GroupName, dict[str, Any]], DataVersion]:
    """GET_ALL_SUBSCRIPTIONGROUP_CONFIG's body: each group's JSON object, and the data version.

    The objects stay JSON: the broker's `SubscriptionGroupConfig.from_json` reads them.
    """
    d = _object(loads_lenient(body, "SubscriptionGroupWrapper"), "subscription group body")
    table = _object(d.get("subscriptionGroupTable"), "subscriptionGroupTable")
    groups = {str(k): _object(v, f"subscription group {k!r}") for k, v in table.items()}
    return groups, _data_version(d.get("dataVersion"))


def encode_consumer_offsets(table: Mapping[OffsetKey, Mapping[QueueId, QueueOffset]]) -> bytes:
    """`{"offsetTable":{"<topic>@<group>":{"<queueId>":offset}}}` (consumerOffset.json's form)."""
    return orjson.dumps(
        {"offsetTable": {k: {str(q): o for q, o in v.items()} for k, v in table.items()}}
    )


def decode_consumer_offsets(
    body: bytes | memoryview | str,
) -> dict[OffsetKey, dict[QueueId, QueueOffset]]:
    """GET_ALL_CONSUMER_OFFSET's body (a 5.x master adds a `dataVersion`, ignored here)."""
    d = _object(loads_lenient(body, "ConsumerOffsetSerializeWrapper"), "consumer offset body")
    out: dict[OffsetKey, dict[QueueId, QueueOffset]] = {}
    for key, queues in _object(d.get("offsetTable"), "offsetTable").items():
        out[str(key)] = queue_offsets(key, queues)
    return out


def queue_offsets(key: object, queues: object) -> dict[QueueId, QueueOffset]:
    """One `<topic>@<group>` entry of a consumer offset table: queue id -> offset. Raises
    `BodyError` naming what Java would not read (the broker's own file is read with it too)."""
    if "@" not in str(key):
        raise BodyError(f"offsetTable key {key!r} is not <topic>@<group>")
    return {
        _integer(q, f"offsetTable[{key!r}] queue id", 32): _integer(o, f"offsetTable[{key!r}]")
        for q, o in _object(queues, f"offsetTable[{key!r}]").items()
    }


def encode_delay_offsets(table: Mapping[DelayLevel, QueueOffset]) -> bytes:
    """`{"offsetTable":{"<level>":offset}}`, exactly what delayOffset.json holds."""
    return orjson.dumps({"offsetTable": {str(k): v for k, v in table.items()}})


def decode_delay_offsets(body: bytes | memoryview | str) -> dict[DelayLevel, QueueOffset]:
    """GET_ALL_DELAY_OFFSET's body: the next offset to deliver of each delay level."""
    return delay_offsets(loads_lenient(body, "DelayOffsetSerializeWrapper"))


def delay_offsets(doc: object) -> dict[DelayLevel, QueueOffset]:
    """The parsed content of `delayOffset.json`; raises `BodyError` naming what is wrong."""
    d = _object(doc, "delay offset body")
    return {
        _integer(k, "delay level", 32): _integer(v, f"offsetTable[{k!r}]")
        for k, v in _object(d.get("offsetTable"), "offsetTable").items()
    }
