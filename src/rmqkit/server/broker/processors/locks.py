"""Queue locks for orderly consumption: LOCK_BATCH_MQ and UNLOCK_BATCH_MQ (RocketMQ
`RebalanceLockManager`).

An orderly consumer locks the queues it was assigned, on this broker, and renews the locks every
20 s; a lock not renewed for `LOCK_MAX_LIVE_S` (60 s) expires, so a consumer that died frees its
queues. Only one client of a group holds a queue at a time. The answer lists the queues locked
for the asking client; queues of other brokers are never granted here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from rmqkit.common.java_values import json_int
from rmqkit.protocol.codes import RequestCode, ResponseCode
from rmqkit.protocol.command import RemotingCommand
from rmqkit.remoting.connection import Connection, HandlerResult

if TYPE_CHECKING:
    from rmqkit.server.broker.broker import Broker

LOCK_MAX_LIVE_S = 60.0
QueueKey = tuple[str, str, int]
"""(topic, broker name, queue id)"""


@dataclass(slots=True)
class LockEntry:
    client_id: str
    last_update: float

    def expired(self, now: float) -> bool:
        return now - self.last_update > LOCK_MAX_LIVE_S


class LockTable:
    """Group -> queue -> holder."""

    def __init__(self) -> None:
        self.locks: dict[str, dict[QueueKey, LockEntry]] = {}

    def try_lock(self, group: str, client_id: str, queues: list[QueueKey]) -> list[QueueKey]:
        now = time.monotonic()
        table = self.locks.setdefault(group, {})
        granted = []
        for q in queues:
            entry = table.get(q)
            if entry is None or entry.expired(now) or entry.client_id == client_id:
                table[q] = LockEntry(client_id, now)
                granted.append(q)
        return granted

    def unlock(self, group: str, client_id: str, queues: list[QueueKey]) -> None:
        table = self.locks.get(group, {})
        for q in queues:
            entry = table.get(q)
            if entry is not None and entry.client_id == client_id:
                del table[q]

    def holder(self, group: str, queue: QueueKey) -> str | None:
        entry = self.locks.get(group, {}).get(queue)
        if entry is None or entry.expired(time.monotonic()):
            return None
        return entry.client_id


def _queues(body: dict[str, Any]) -> list[QueueKey]:
    return [
        (str(mq["topic"]), str(mq.get("brokerName", "")), _queue_id(mq["queueId"]))
        for mq in body.get("mqSet") or []
        if isinstance(mq, dict) and "topic" in mq and "queueId" in mq
    ]


def _queue_id(value: object) -> int:
    n = json_int(value, 32)
    if n is None:
        raise ValueError(f"queueId {value!r:.40} is not a Java int")
    return n


class LockProcessor:
    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    def __call__(self, conn: Connection, cmd: RemotingCommand) -> HandlerResult:
        try:
            body = orjson.loads(cmd.body)
            group = str(body["consumerGroup"])
            client_id = str(body["clientId"])
            queues = _queues(body)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            return cmd.response(
                ResponseCode.SYSTEM_ERROR,
                f"a lock request body needs consumerGroup, clientId and mqSet: {exc}",
            )
        name = self.broker.settings.broker_name
        mine = [q for q in queues if q[1] == name]
        locks = self.broker.locks
        if cmd.code == RequestCode.UNLOCK_BATCH_MQ:
            locks.unlock(group, client_id, mine)
            return cmd.response(ResponseCode.SUCCESS)
        granted = locks.try_lock(group, client_id, mine)
        payload = {
            "lockOKMQSet": [{"topic": t, "brokerName": b, "queueId": q} for t, b, q in granted]
        }
        return cmd.response(ResponseCode.SUCCESS, body=orjson.dumps(payload))
