"""Request-reply end to end: a Producer requests, a PushConsumer replies, the broker pushes back."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from rmqkit.client.message import Message, SendStatus
from rmqkit.client.producer import Producer
from rmqkit.client.push_consumer import ConsumeContext, ConsumeResult, PushConsumer
from rmqkit.client.request import create_reply
from rmqkit.common.properties import REPLY_MESSAGE_FLAG, Prop, decode_properties, reply_topic
from rmqkit.errors import MessageIllegalError, RequestTimeoutError, SystemError_
from rmqkit.protocol.codes import RequestCode, ResponseCode
from rmqkit.protocol.command import RemotingCommand
from rmqkit.protocol.heartbeat import HeartbeatData
from rmqkit.protocol.record import StoredMessage, decode_records
from rmqkit.remoting.client import RemotingClient
from rmqkit.remoting.connection import Connection
from rmqkit.server.properties import settings_from_properties
from rmqkit.testing import check_for

from .conftest import Cluster, running_cluster

pytestmark = pytest.mark.integration
_names = itertools.count()
REPLY_TOPIC = reply_topic("DefaultCluster")


@pytest.fixture
async def unstored(tmp_path: Path) -> AsyncIterator[Cluster]:
    """A cluster whose broker does not store replies (storeReplyMessageEnable=false)."""
    async with running_cluster(tmp_path, store_reply_message_enable=False) as c:
        yield c


def producer(c: Cluster, group: str = "REQ") -> Producer:
    return Producer(group, c.ns, instance_name=f"p{next(_names)}")


@asynccontextmanager
async def replier(c: Cluster, topic: str, seen: list[StoredMessage]) -> AsyncIterator[PushConsumer]:
    """A consumer that answers every request on `topic` with b"re:" + its body."""
    pc = PushConsumer(
        f"RESPONDER-{topic}", c.ns, instance_name=f"c{next(_names)}",
        consume_from_where="CONSUME_FROM_FIRST_OFFSET", rebalance_interval_ms=500,
    )  # fmt: skip
    pc.subscribe(topic)
    async with Producer("REPLIER", c.ns, instance_name=f"r{next(_names)}") as sender:

        async def handle(msgs: list[StoredMessage], ctx: ConsumeContext) -> ConsumeResult:
            for m in msgs:
                seen.append(m)
                reply = create_reply(m, b"re:" + m.body, properties={"answered-by": "test"})
                await sender.send_reply(reply)
            return ConsumeResult.SUCCESS

        pc.register(handle)
        async with pc:
            yield pc


async def ready(pc: PushConsumer, topic: str, queues: int) -> None:
    await check_for(lambda: len([q for q in pc.process_queues if q.topic == topic]) == queues,
                    timeout=10)  # fmt: skip


def stored(c: Cluster, topic: str) -> list[StoredMessage]:
    g = c.broker.store.get_message(topic, 0, 0, 64)
    return decode_records(g.body()) if g.records else []


async def test_a_request_gets_its_reply(cluster: Cluster) -> None:
    await cluster.create_topic("RQ1", 2)
    seen: list[StoredMessage] = []
    async with replier(cluster, "RQ1", seen) as pc, producer(cluster) as p:
        await ready(pc, "RQ1", 2)
        reply = await p.request(Message("RQ1", b"ping", properties={"k": "v"}), timeout_ms=5_000)
    assert reply.body == b"re:ping" and reply.topic == REPLY_TOPIC
    (req,) = seen
    assert req.properties[Prop.CLUSTER] == "DefaultCluster"  # added by the broker on send
    assert req.properties[Prop.MESSAGE_REPLY_TO_CLIENT] == p.instance.client_id
    assert req.properties[Prop.MESSAGE_TTL] == "5000" and req.properties["k"] == "v"
    props = reply.properties
    assert props[Prop.CORRELATION_ID] == req.properties[Prop.CORRELATION_ID]
    assert props[Prop.MESSAGE_TYPE] == REPLY_MESSAGE_FLAG and props["answered-by"] == "test"
    assert Prop.PUSH_REPLY_TIME in props and Prop.REPLY_MESSAGE_ARRIVE_TIME in props
    assert len(p.instance.requests) == 0


async def test_a_request_by_hash_key_lands_on_the_keys_queue(cluster: Cluster) -> None:
    await cluster.create_topic("RQ2", 4)
    seen: list[StoredMessage] = []
    async with replier(cluster, "RQ2", seen) as pc, producer(cluster) as p:
        await ready(pc, "RQ2", 4)
        for i in range(3):
            r = await p.request(Message("RQ2", f"o{i}".encode()), hash_key="order-7")
            assert r.body == f"re:o{i}".encode()
    assert len({m.queue_id for m in seen}) == 1


async def test_no_reply_raises_request_timeout(cluster: Cluster) -> None:
    await cluster.create_topic("RQ3", 1)
    async with producer(cluster) as p:
        with pytest.raises(RequestTimeoutError, match="within 200 ms") as info:
            await p.request(Message("RQ3", b"anyone?"), timeout_ms=200)
        assert isinstance(info.value, TimeoutError) and info.value.topic == "RQ3"
        assert len(p.instance.requests) == 0
    (req,) = stored(cluster, "RQ3")  # the request itself was sent
    assert req.properties[Prop.CORRELATION_ID] == info.value.correlation_id


async def test_late_and_unknown_replies_are_dropped_quietly(cluster: Cluster) -> None:
    await cluster.create_topic("RQ4", 1)
    async with producer(cluster) as p, producer(cluster, "REPLIER") as r:
        with pytest.raises(RequestTimeoutError) as info:
            await p.request(Message("RQ4", b"slow"), timeout_ms=100)
        (req,) = stored(cluster, "RQ4")
        late = await r.send_reply(create_reply(req, b"too late"))
        assert late.status is SendStatus.SEND_OK
        unknown = create_reply(req, b"who asked?")
        unknown.properties[Prop.CORRELATION_ID] = "no-such-request"
        await r.send_reply(unknown)
        requests = p.instance.requests
        await check_for(lambda: requests.dropped == 2)
        assert len(requests) == 0 and info.value.correlation_id not in requests.pending
        # The requester is still fine: a new request is answered normally.
        seen: list[StoredMessage] = []
        async with replier(cluster, "RQ4", seen) as pc:
            await ready(pc, "RQ4", 1)
            assert (await p.request(Message("RQ4", b"again"))).body == b"re:again"


async def test_concurrent_requests_are_matched_by_correlation_id(cluster: Cluster) -> None:
    await cluster.create_topic("RQ5", 4)
    seen: list[StoredMessage] = []
    async with replier(cluster, "RQ5", seen) as pc, producer(cluster) as p:
        await ready(pc, "RQ5", 4)
        replies = await asyncio.gather(
            *(p.request(Message("RQ5", f"q{i}".encode()), timeout_ms=10_000) for i in range(20))
        )
    assert [m.body for m in replies] == [f"re:q{i}".encode() for i in range(20)]
    assert len({m.properties[Prop.CORRELATION_ID] for m in replies}) == 20


async def test_replies_are_stored_in_the_reply_topic(cluster: Cluster) -> None:
    await cluster.create_topic("RQ6", 1)
    seen: list[StoredMessage] = []
    async with replier(cluster, "RQ6", seen) as pc, producer(cluster) as p:
        await ready(pc, "RQ6", 1)
        reply = await p.request(Message("RQ6", b"keep"))
    (kept,) = stored(cluster, REPLY_TOPIC)
    assert kept.body == b"re:keep"
    assert kept.properties[Prop.CORRELATION_ID] == reply.properties[Prop.CORRELATION_ID]
    assert kept.properties[Prop.MESSAGE_TYPE] == REPLY_MESSAGE_FLAG


async def test_replies_are_not_stored_when_the_setting_is_off(unstored: Cluster) -> None:
    await unstored.create_topic("RQ7", 1)
    seen: list[StoredMessage] = []
    async with replier(unstored, "RQ7", seen) as pc, producer(unstored) as p:
        await ready(pc, "RQ7", 1)
        assert (await p.request(Message("RQ7", b"forget"))).body == b"re:forget"
    assert stored(unstored, REPLY_TOPIC) == []


async def test_a_reply_to_a_client_that_is_not_connected_is_refused(cluster: Cluster) -> None:
    await cluster.create_topic("RQ8", 1)
    async with producer(cluster) as p, producer(cluster, "REPLIER") as r:
        with pytest.raises(RequestTimeoutError):
            await p.request(Message("RQ8", b"x"), timeout_ms=50)
        (req,) = stored(cluster, "RQ8")
        orphan = create_reply(req, b"lost")
        orphan.properties[Prop.MESSAGE_REPLY_TO_CLIENT] = "10.0.0.9@gone@1"
        with pytest.raises(SystemError_, match=r"channel of <10\.0\.0\.9@gone@1> not found"):
            await r.send_reply(orphan)
        with pytest.raises(MessageIllegalError, match="create_reply"):
            await r.send_reply(Message("RQ8", b"not a reply"))
    assert [m.body for m in stored(cluster, REPLY_TOPIC)] == [b"lost"]  # stored all the same


async def test_the_reply_topic_is_declared_and_routed(cluster: Cluster) -> None:
    cfg = cluster.broker.topics.get(REPLY_TOPIC)
    assert cfg is not None and (cfg.read_queue_nums, cfg.write_queue_nums) == (1, 1)
    async with producer(cluster) as p:
        route = await p.instance.route(REPLY_TOPIC)
    assert route is not None and [q.write_queue_nums for q in route.queue_datas] == [1]


async def test_send_reply_message_v1_header_and_the_push_as_java_sees_them(
    cluster: Cluster,
) -> None:
    """SEND_REPLY_MESSAGE (324, full header names) from a raw client, and the 326 push's header."""
    pushes: list[RemotingCommand] = []

    def on_push(conn: Connection, cmd: RemotingCommand) -> RemotingCommand:
        pushes.append(cmd)
        return cmd.response(ResponseCode.SUCCESS)

    async with RemotingClient(handler=on_push) as requester:
        hb = HeartbeatData("127.0.0.1@raw@1", producer_groups=["RAW"]).encode()
        r = await requester.invoke(cluster.br, RemotingCommand(RequestCode.HEART_BEAT, body=hb))
        assert r.code == ResponseCode.SUCCESS
        props = (
            f"{Prop.MESSAGE_TYPE}\x01reply\x02{Prop.CORRELATION_ID}\x01c-1\x02"
            f"{Prop.MESSAGE_REPLY_TO_CLIENT}\x01127.0.0.1@raw@1\x02{Prop.MESSAGE_TTL}\x013000\x02"
        )
        resp = await cluster.call(
            RequestCode.SEND_REPLY_MESSAGE, body=b"raw reply", producerGroup="JAVA",
            topic=REPLY_TOPIC, defaultTopic="TBW102", defaultTopicQueueNums=4, queueId=0,
            sysFlag=0, bornTimestamp=1234, flag=7, properties=props, reconsumeTimes=0,
            unitMode="false",
        )  # fmt: skip
        assert resp.code == ResponseCode.SUCCESS, resp.remark
        assert resp.ext_fields["queueId"] == "0" and resp.ext_fields["msgId"] != "0"
    (push,) = pushes
    f = push.ext_fields
    assert push.code == RequestCode.PUSH_REPLY_MESSAGE_TO_CLIENT and push.body == b"raw reply"
    assert (f["producerGroup"], f["topic"], f["queueId"], f["flag"]) == (
        "JAVA",
        REPLY_TOPIC,
        "0",
        "7",
    )
    assert (f["sysFlag"], f["bornTimestamp"], f["storeHost"]) == ("0", "1234", cluster.br)
    assert f["bornHost"].startswith("127.0.0.1:") and int(f["storeTimestamp"]) > 0
    pushed_props = decode_properties(f["properties"])
    assert pushed_props[Prop.CORRELATION_ID] == "c-1" and Prop.PUSH_REPLY_TIME in pushed_props


async def test_a_reply_to_a_missing_topic_is_refused_without_auto_creation(
    cluster: Cluster,
) -> None:
    resp = await cluster.call(
        RequestCode.SEND_REPLY_MESSAGE_V2, body=b"x", a="G", b="OTHER_REPLY_TOPIC", c="NO_TEMPLATE",
        d=4, e=0, f=0, g=1, h=0, i=f"{Prop.MESSAGE_TYPE}\x01reply\x02",
    )  # fmt: skip
    assert resp.code == ResponseCode.TOPIC_NOT_EXIST, resp.remark


def test_store_reply_message_enable_is_a_broker_properties_key() -> None:
    warnings: list[str] = []
    s = settings_from_properties({"storeReplyMessageEnable": "false"}, warn=warnings.append)
    assert s.store_reply_message_enable is False and warnings == []
    assert settings_from_properties({}).store_reply_message_enable is True
