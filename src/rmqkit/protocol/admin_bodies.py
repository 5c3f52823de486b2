"""JSON bodies of the admin requests: topic stats, consume stats, connections, offset resets.

RocketMQ writes several of these with fastjson, whose maps keyed by a MessageQueue come out with
*object* keys, which is not valid JSON:

    {"offsetTable":{{"brokerName":"b","queueId":0,"topic":"T"}:{"maxOffset":5,"minOffset":0}}}

Java admin tools expect exactly that, so rmqkit writes it the same way (keys in fastjson's
alphabetical field order) and reads it back with `decode_mq_table_json`, which also accepts the
form with the key object's fields in any order.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from rmqkit.protocol.route import BodyError

MQKey = tuple[str, str, int]
"""(topic, broker name, queue id)"""

_KEY_OBJECT = re.compile(r'\{("(?:brokerName|queueId|topic)":(?:"(?:[^"\\]|\\.)*"|-?\d+),?){3}\}:')


def mq_key_json(key: MQKey) -> str:
    topic, broker, qid = key
    return f'{{"brokerName":{orjson.dumps(broker).decode()},"queueId":{qid},' \
        f'"topic":{orjson.dumps(topic).decode()}}}'  # fmt: skip


def encode_mq_table_json(name: str, table: dict[MQKey, dict[str, Any]], **extra: Any) -> bytes:
    """`{"<name>":{{mq}:{...},...}, ...extra}` in fastjson's object-key form."""
    items = ",".join(
        f"{mq_key_json(k)}:{orjson.dumps(v, option=orjson.OPT_SORT_KEYS).decode()}"
        for k, v in sorted(table.items())
    )
    rest = "".join(
        f",{orjson.dumps(k).decode()}:{orjson.dumps(v).decode()}" for k, v in extra.items()
    )
    return f'{{"{name}":{{{items}}}{rest}}}'.encode()


def decode_mq_table_json(
    body: bytes | memoryview | str, name: str
) -> tuple[dict[MQKey, dict[str, Any]], dict[str, Any]]:
    """The MessageQueue-keyed table `name` and the other top-level fields of a body."""
    text = body if isinstance(body, str) else bytes(body).decode()
    keys: list[MQKey] = []

    def to_index(m: re.Match[str]) -> str:
        obj = orjson.loads(m.group(0)[:-1])
        keys.append((str(obj["topic"]), str(obj["brokerName"]), int(obj["queueId"])))
        return f'"#{len(keys) - 1}":'

    try:
        data = orjson.loads(_KEY_OBJECT.sub(to_index, text))
    except orjson.JSONDecodeError as exc:
        raise BodyError(f"admin body is not readable JSON: {exc}") from exc
    raw = data.pop(name, {}) or {}
    table = {keys[int(k[1:])]: v for k, v in raw.items() if k.startswith("#")}
    return table, data
