"""An admin asks a consumer client through the broker: GET_CONSUMER_RUNNING_INFO and
CONSUME_MESSAGE_DIRECTLY, with a NameServer, a broker and clients on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from rmqkit.client.admin import AdminClient
from rmqkit.client.instance import ClientConfig, ClientInstance
from rmqkit.client.message import Message, MessageQueue
from rmqkit.client.producer import Producer
from rmqkit.client.push_consumer import ConsumeContext, ConsumeResult
from rmqkit.client.rebalance import consumer_entry
from rmqkit.common.subscription import SubscriptionData
from rmqkit.errors import BrokerResponseError, CorruptRecordError
from rmqkit.protocol.codes import RequestCode, ResponseCode
from rmqkit.protocol.command import RemotingCommand
from rmqkit.protocol.heartbeat import HeartbeatData
from rmqkit.protocol.record import StoredMessage
from rmqkit.testing import check_for

from .conftest import FAST_RETRIES, Cluster, consumer, running_cluster

pytestmark = pytest.mark.integration


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    async with running_cluster(tmp_path, store=FAST_RETRIES) as c:
        yield c


async def test_running_info_tells_queues_settings_and_figures(cluster: Cluster) -> None:
    got: list[bytes] = []
    refused: set[bytes] = set()

    async def handle(msgs: list[StoredMessage], ctx: ConsumeContext) -> ConsumeResult:
        for m in msgs:
            if m.body == b"m3" and m.body not in refused:
                refused.add(m.body)
                return ConsumeResult.RECONSUME_LATER  # once: a failure in the figures
            got.append(m.body)
        return ConsumeResult.SUCCESS

    async with AdminClient(cluster.ns) as admin:
        await admin.create_topic("RI", 2)
        async with Producer("PG", cluster.ns, instance_name="p1") as p:
            for i in range(10):
                await p.send(Message("RI", f"m{i}".encode()))
        async with consumer(cluster, "RG", "RI", handle, consume_concurrency=3) as pc:
            await check_for(lambda: len(set(got)) == 10, timeout=10)
            client_id = pc.instance.client_id
            info = await admin.consumer_running_info("RG", client_id)
            assert info.push
            assert info.properties["consumerGroup"] == "RG"
            assert info.properties["PROP_CONSUMEORDERLY"] == "false"
            assert info.properties["PROP_THREADPOOL_CORE_SIZE"] == "3"
            assert int(info.properties["PROP_CONSUMER_START_TIMESTAMP"]) > 0
            assert {s["topic"] for s in info.subscriptions} == {"RI", "%RETRY%RG"}
            mine = {q: i for q, i in info.queues.items() if q.topic == "RI"}
            assert set(mine) == {MessageQueue("RI", "broker-a", q) for q in (0, 1)}
            await check_for(lambda: pc.offsets.table.get(MessageQueue("RI", "broker-a", 0)) == 5)
            info = await admin.consumer_running_info("RG", client_id)
            mine = {q: i for q, i in info.queues.items() if q.topic == "RI"}
            assert sum(i["commitOffset"] for i in mine.values()) == 10
            assert all(i["cachedMsgCount"] == 0 and not i["droped"] for i in mine.values())
            assert all(i["lastPullTimestamp"] > 0 and i["lastConsumeTimestamp"] > 0
                       for i in mine.values())  # fmt: skip
            ri = info.status["RI"]
            assert ri["pullTPS"] > 0 and ri["consumeOKTPS"] > 0
            assert ri["consumeFailedMsgs"] == 1 and ri["consumeFailedTPS"] > 0
            assert info.jstack is None
            stacks = await admin.consumer_running_info("RG", client_id, jstack=True)
            assert "thread" in (stacks.jstack or "") and "Task" in (stacks.jstack or "")


async def test_consume_message_directly_runs_the_listener_and_reports(cluster: Cluster) -> None:
    seen: list[tuple[bytes, MessageQueue]] = []

    async def handle(msgs: list[StoredMessage], ctx: ConsumeContext) -> ConsumeResult:
        m = msgs[0]
        if m.body == b"boom":
            raise RuntimeError("no such order")
        seen.append((m.body, ctx.queue))
        return ConsumeResult.RECONSUME_LATER if m.body == b"later" else ConsumeResult.SUCCESS

    async with AdminClient(cluster.ns) as admin:
        await admin.create_topic("CD", 1)
        async with consumer(cluster, "CG", "CD", handle) as pc:
            async with Producer("PG", cluster.ns, instance_name="p2") as p:
                sent = {b: await p.send(Message("CD", b)) for b in (b"ok", b"later", b"boom")}
            await check_for(lambda: len(seen) >= 2, timeout=10)
            seen.clear()
            cid = pc.instance.client_id
            r = await admin.consume_message_directly("CG", cid, sent[b"ok"].offset_msg_id)
            assert r["consumeResult"] == "CR_SUCCESS" and r["order"] is False
            assert seen == [(b"ok", MessageQueue("CD", "broker-a", 0))]
            r = await admin.consume_message_directly("CG", cid, sent[b"later"].msg_id, "CD")
            assert r["consumeResult"] == "CR_LATER"
            r = await admin.consume_message_directly("CG", cid, sent[b"boom"].offset_msg_id)
            assert r["consumeResult"] == "CR_THROW_EXCEPTION"
            assert r["remark"] == "RuntimeError: no such order"
            with pytest.raises(BrokerResponseError, match=r"NoSuchGroup .* not online"):
                await admin.consume_message_directly("NoSuchGroup", cid, sent[b"ok"].offset_msg_id)
            with pytest.raises(CorruptRecordError):
                await admin.consume_message_directly("CG", cid, "not-an-id")
            # The broker itself: an id that is not an offset id, or names no record of its own.
            past_end = sent[b"ok"].offset_msg_id[:-16] + f"{10**9:016X}"
            for bad, why in (("zz", "has 32 or 56 hex characters"), (past_end, "no message at")):
                r2 = await cluster.call(RequestCode.CONSUME_MESSAGE_DIRECTLY, consumerGroup="CG",
                                        clientId=cid, msgId=bad)  # fmt: skip
                assert r2.code == ResponseCode.SYSTEM_ERROR and why in (r2.remark or "")
            # Direct consumption moves nothing: the group's offset is where consumption left it.
            assert pc.offsets.table[MessageQueue("CD", "broker-a", 0)] == 3


async def test_a_client_not_online_or_not_answering(cluster: Cluster) -> None:
    async with AdminClient(cluster.ns) as admin:
        with pytest.raises(BrokerResponseError, match="not online"):
            await admin.consumer_running_info("Nobody", "127.0.0.1@x@1")
        # A client that heart-beats as a consumer but never answers the broker's question.
        stuck = ClientInstance(ClientConfig(cluster.ns, "stuck"))
        never = asyncio.Event()

        async def hang(conn: object, cmd: RemotingCommand) -> RemotingCommand:
            await never.wait()
            return cmd.response(ResponseCode.SUCCESS)

        stuck.server_handlers[RequestCode.GET_CONSUMER_RUNNING_INFO] = hang
        entry = consumer_entry("SG", "CONSUME_PASSIVELY", "CLUSTERING",
                               "CONSUME_FROM_LAST_OFFSET", [SubscriptionData.build("T", "*")])
        await stuck.start()
        try:
            beat = HeartbeatData(stuck.client_id, consumers=[entry]).encode()
            resp = await stuck.invoke(
                cluster.br, RemotingCommand(RequestCode.HEART_BEAT, body=beat)
            )
            assert resp.code == ResponseCode.SUCCESS
            cluster.broker.client_calls.timeout_s = 0.2
            with pytest.raises(BrokerResponseError, match="Timeout") as err:
                await admin.consumer_running_info("SG", stuck.client_id)
            assert err.value.code == ResponseCode.CONSUME_MSG_TIMEOUT
        finally:
            never.set()
            await stuck.stop()
