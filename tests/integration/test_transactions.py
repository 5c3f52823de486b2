"""Transactional messages end to end: half messages, commit, rollback, check-back, restarts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from rmqkit.client.message import Message
from rmqkit.client.transaction import TransactionProducer, TransactionState
from rmqkit.common.names import TRANS_HALF_TOPIC
from rmqkit.protocol.codes import RequestCode as RC
from rmqkit.protocol.codes import ResponseCode
from rmqkit.protocol.record import StoredMessage, decode_records
from rmqkit.server.broker.broker import Broker
from rmqkit.testing import check_for

from .conftest import Cluster, running_cluster

pytestmark = pytest.mark.integration


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    async with running_cluster(
        tmp_path,
        transaction_timeout_ms=150,
        transaction_check_interval_ms=150,
        transaction_check_max=3,
    ) as c:
        yield c


def visible(c: Cluster | Broker, topic: str) -> list[StoredMessage]:
    b = c.broker if isinstance(c, Cluster) else c
    g = b.store.get_message(topic, 0, 0, 32)
    return decode_records(g.body()) if g.records else []


def producer(c: Cluster, checker=lambda m: TransactionState.COMMIT) -> TransactionProducer:  # type: ignore[no-untyped-def]
    return TransactionProducer("TXG", c.ns, checker=checker, instance_name="tx")


async def test_commit_makes_the_message_visible_once(cluster: Cluster) -> None:
    await cluster.create_topic("TX1", 1)
    async with producer(cluster) as p:
        r = await p.send_in_transaction(
            Message("TX1", b"paid"), lambda m, s: TransactionState.COMMIT
        )
    assert r.state is TransactionState.COMMIT
    await check_for(lambda: len(visible(cluster, "TX1")) == 1)
    (m,) = visible(cluster, "TX1")
    assert m.body == b"paid" and "TRAN_MSG" not in m.properties and m.uniq_key == r.send.msg_id
    assert visible(cluster, TRANS_HALF_TOPIC)[0].body == b"paid"  # the half stays, decided


async def test_rollback_and_a_failing_local_step_hide_it_for_ever(cluster: Cluster) -> None:
    await cluster.create_topic("TX2", 1)
    checks: list[StoredMessage] = []

    async def boom(m: Message, s: object) -> TransactionState:
        raise RuntimeError("local transaction failed")

    async with producer(
        cluster, checker=lambda m: checks.append(m) or TransactionState.COMMIT
    ) as p:
        await p.send_in_transaction(Message("TX2", b"no"), lambda m, s: TransactionState.ROLLBACK)
        with pytest.raises(RuntimeError, match="local transaction failed"):
            await p.send_in_transaction(Message("TX2", b"boom"), boom)
        await check_for(lambda: len(cluster.broker.transactions.resolved_keys) == 2)
        await check_for(lambda: cluster.broker.transactions.half_offset == 2, timeout=5)
    assert visible(cluster, "TX2") == [] and checks == []


async def test_unknown_is_settled_by_the_check_back(cluster: Cluster) -> None:
    await cluster.create_topic("TX3", 1)
    asked: list[str] = []

    def checker(m: StoredMessage) -> TransactionState:
        asked.append(m.properties.get("REAL_TOPIC", ""))
        return TransactionState.COMMIT

    async with producer(cluster, checker) as p:
        await p.send_in_transaction(Message("TX3", b"later"), lambda m, s: TransactionState.UNKNOWN)
        await check_for(lambda: len(visible(cluster, "TX3")) == 1, timeout=5)
    assert asked[:1] == ["TX3"]
    assert [m.body for m in visible(cluster, "TX3")] == [b"later"]  # committed once


async def test_never_answered_half_messages_are_discarded_after_the_last_check(
    cluster: Cluster,
) -> None:
    await cluster.create_topic("TX4", 1)
    asked: list[int] = []

    def undecided(m: StoredMessage) -> TransactionState:
        asked.append(int(m.properties.get("TRANSACTION_CHECK_TIMES", "0")))
        return TransactionState.UNKNOWN

    async with producer(cluster, undecided) as p:
        await p.send_in_transaction(Message("TX4", b"limbo"), lambda m, s: TransactionState.UNKNOWN)
        await check_for(lambda: cluster.broker.transactions.discarded == 1, timeout=10)
    assert asked == [1, 2, 3] and visible(cluster, "TX4") == []


async def test_decisions_survive_a_restart_and_are_not_repeated(cluster: Cluster) -> None:
    await cluster.create_topic("TX5", 1)
    async with producer(cluster) as p:
        await p.send_in_transaction(Message("TX5", b"once"), lambda m, s: TransactionState.COMMIT)
        await check_for(lambda: len(visible(cluster, "TX5")) == 1)
    b = cluster.broker
    await b.stop()
    again = Broker(b.settings)
    await again.start()
    try:
        async with producer(cluster) as p:  # a producer is online to answer any check
            await check_for(lambda: again.transactions.half_offset >= 1, timeout=5)
        assert [m.body for m in visible(again, "TX5")] == [b"once"]
    finally:
        await again.stop()


async def test_end_transaction_bad_input(cluster: Cluster) -> None:
    r = await cluster.call(RC.END_TRANSACTION, producerGroup="G", tranStateTableOffset=0,
                           commitLogOffset=10**12, commitOrRollback=8)  # fmt: skip
    assert r.code == ResponseCode.SYSTEM_ERROR and "half message" in (r.remark or "")
    r = await cluster.call(RC.END_TRANSACTION, producerGroup="G", tranStateTableOffset=0,
                           commitLogOffset=0, commitOrRollback=5)  # fmt: skip
    assert r.code == ResponseCode.SYSTEM_ERROR and "commitOrRollback" in (r.remark or "")
    await cluster.create_topic("TX6", 1)
    async with producer(cluster) as p:
        sent = await p.send(Message("TX6", b"x", properties={"TRAN_MSG": "true", "PGROUP": "TXG"}))
    from rmqkit.protocol.message_id import decode_offset_msg_id

    _, phys = decode_offset_msg_id(sent.offset_msg_id)
    r = await cluster.call(RC.END_TRANSACTION, producerGroup="OTHER", tranStateTableOffset=0,
                           commitLogOffset=phys, commitOrRollback=8)  # fmt: skip
    assert r.code == ResponseCode.SYSTEM_ERROR and "does not match" in (r.remark or "")
