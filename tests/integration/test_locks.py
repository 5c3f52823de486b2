"""Orderly-consumption queue locks through the protocol."""

from __future__ import annotations

import orjson
import pytest

from rmqkit.protocol.codes import RequestCode as RC
from rmqkit.protocol.codes import ResponseCode
from rmqkit.server.broker.processors import locks

from .conftest import Cluster

pytestmark = pytest.mark.integration


def body(client: str, queues: list[tuple[str, str, int]], group: str = "OG") -> bytes:
    return orjson.dumps({
        "consumerGroup": group, "clientId": client, "onlyThisBroker": False,
        "mqSet": [{"topic": t, "brokerName": b, "queueId": q} for t, b, q in queues],
    })  # fmt: skip


def granted(r) -> set[int]:  # type: ignore[no-untyped-def]
    return {mq["queueId"] for mq in orjson.loads(r.body)["lockOKMQSet"]}


async def test_one_holder_per_queue_renewal_unlock_and_expiry(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    mine = [("O", "broker-a", 0), ("O", "broker-a", 1), ("O", "other-broker", 2)]
    a = await cluster.call(RC.LOCK_BATCH_MQ, body("A", mine))
    assert granted(a) == {0, 1}  # a queue of another broker is never granted here
    b = await cluster.call(RC.LOCK_BATCH_MQ, body("B", mine[:2]))
    assert granted(b) == set()  # held by A
    assert granted(await cluster.call(RC.LOCK_BATCH_MQ, body("A", mine[:1]))) == {0}  # renewal
    assert (await cluster.call(RC.UNLOCK_BATCH_MQ, body("A", mine[:1]))).code == 0
    assert granted(await cluster.call(RC.LOCK_BATCH_MQ, body("B", mine[:2]))) == {0}
    other = await cluster.call(RC.LOCK_BATCH_MQ, body("B", mine[:2], group="OTHER"))
    assert granted(other) == {0, 1}  # groups lock independently
    monkeypatch.setattr(locks, "LOCK_MAX_LIVE_S", -1.0)  # every lock is now stale
    assert granted(await cluster.call(RC.LOCK_BATCH_MQ, body("B", mine[:2]))) == {0, 1}


async def test_bad_lock_body(cluster: Cluster) -> None:
    r = await cluster.call(RC.LOCK_BATCH_MQ, b"{}")
    assert r.code == ResponseCode.SYSTEM_ERROR and "consumerGroup" in (r.remark or "")
