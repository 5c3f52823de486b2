"""Message trace: the record format (RocketMQ's TraceDataEncoder), the broker's trace topic, and a
message's way from its send through a retry and a dead-letter queue, read back by query_trace."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from click.testing import CliRunner

from rmqkit.cli.main import cli
from rmqkit.client.admin import AdminClient
from rmqkit.client.instance import ClientConfig, ClientInstance
from rmqkit.client.message import Message
from rmqkit.client.producer import Producer
from rmqkit.client.push_consumer import ConsumeContext, ConsumeResult, PushConsumer
from rmqkit.client.trace import (
    QUEUE_SIZE,
    TRACE_TOPIC,
    ConsumeReturnType,
    MessageType,
    TraceBean,
    TraceContext,
    TraceDispatcher,
    TraceType,
    decode_trace_data,
    encode_context,
)
from rmqkit.common.topic import TopicConfig
from rmqkit.dashboard import Dashboard
from rmqkit.protocol.record import StoredMessage, decode_records
from rmqkit.server.broker.broker import Broker
from rmqkit.server.namesrv.namesrv import NameServer, NameServerSettings
from rmqkit.testing import check_for

from .conftest import Cluster, broker_settings, running_cluster

LEVELS = "100ms 100ms 100ms"
"""Retries use level 3 + reconsume times, clamped to the last: 100 ms each."""


# -- the record format ------------------------------------------------------------------------

# What Java's TraceDataEncoder writes: a Pub with no tags, a SubBefore, a SubAfter (old, without
# its context code and time) and an EndTransaction, in one trace message body.
JAVA = (
    "Pub\x011700000000000\x01DefaultRegion\x01PG\x01Orders\x017F0000010001\x01null\x01k1 k2"
    "\x01127.0.0.1:10911\x01512\x013\x010\x017F00000100002A9F0000000000001234\x01true\x02"
    "SubBefore\x011700000000100\x01\x01CG\x01REQ1\x017F0000010001\x011\x01null\x02"
    "SubAfter\x01REQ1\x017F0000010001\x017\x01false\x01null\x02"
    "EndTransaction\x011700000000050\x01DefaultRegion\x01PG\x01Orders\x017F0000010001\x01tag"
    "\x01null\x01127.0.0.1:10911\x011\x01TX1\x01COMMIT_MESSAGE\x01true\x02"
)


def test_java_written_records_decode() -> None:
    pub, before, after, end = decode_trace_data(JAVA)
    assert pub.trace_type is TraceType.Pub and pub.group == "PG" and pub.success
    b = pub.beans[0]
    assert (b.topic, b.msg_id, b.tags, b.keys, b.store_host, b.body_length) == (
        "Orders", "7F0000010001", None, "k1 k2", "127.0.0.1:10911", 512,
    )  # fmt: skip
    assert b.offset_msg_id == "7F00000100002A9F0000000000001234" and pub.cost_time == 3
    assert (before.group, before.request_id, before.beans[0].retry_times) == ("CG", "REQ1", 1)
    assert (after.request_id, after.success, after.cost_time, after.context_code) == (
        "REQ1", False, 7, 0,
    )  # fmt: skip
    e = end.beans[0]
    assert (e.transaction_id, e.transaction_state, e.from_transaction_check) == (
        "TX1", "COMMIT_MESSAGE", True,
    )  # fmt: skip
    assert e.msg_type is MessageType.Trans_Msg_Half


def test_records_round_trip_in_java_field_order() -> None:
    bean = TraceBean("Orders", "ID1", "OFF1", None, "k1", "10.0.0.1:10911", body_length=9,
                     retry_times=2, msg_type=MessageType.Delay_Msg)  # fmt: skip
    pub = TraceContext(TraceType.Pub, 5, "R", "PG", 4, True, beans=[bean])
    text, keys = encode_context(pub)
    assert text.split("\x01") == ["Pub", "5", "R", "PG", "Orders", "ID1", "null", "k1",
                                  "10.0.0.1:10911", "9", "4", "3", "OFF1", "true\x02"]  # fmt: skip
    assert keys == ["ID1", "k1"]
    two = TraceBean(msg_id="ID2")
    after = TraceContext(TraceType.SubAfter, 9, group="CG", cost_time=1, success=False,
                         request_id="Q", context_code=4, beans=[bean, two])  # fmt: skip
    text, keys = encode_context(after)
    assert text.count("\x02") == 2 and keys == ["ID1", "k1", "ID2"]  # one record per message
    back = decode_trace_data(text)
    assert [(c.request_id, c.beans[0].msg_id, c.context_code, c.timestamp) for c in back] == [
        ("Q", "ID1", 4, 9), ("Q", "ID2", 4, 9),
    ]  # fmt: skip
    assert decode_trace_data("Nonsense\x01x\x02Pub\x01not-a-number\x02") == []


async def test_a_full_queue_drops_and_counts_and_never_waits() -> None:
    inst = ClientInstance(ClientConfig("127.0.0.1:1", "trace-unit"))  # nothing listens there
    d = TraceDispatcher(inst)
    ctx = TraceContext(TraceType.Pub, beans=[TraceBean("T", "ID")])
    assert all(d.append(ctx) for _ in range(QUEUE_SIZE))
    assert not d.append(ctx) and d.discarded == 1
    await d.flush()
    assert d.send_failures >= 1 and d.messages_sent == 0 and not d.queue
    await inst.remoting.close()


# -- through a broker -------------------------------------------------------------------------


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    async with running_cluster(
        tmp_path, trace_topic_enable=True, store={"message_delay_level": LEVELS}
    ) as c:
        yield c


def consumer(c: Cluster, group: str, fail_times: int, seen: list[StoredMessage],
             **kw: int) -> PushConsumer:  # fmt: skip
    pc = PushConsumer(
        group, c.ns, instance_name=f"trace-{group}", consume_from_where="CONSUME_FROM_FIRST_OFFSET",
        rebalance_interval_ms=300, enable_msg_trace=True, **kw,
    )  # fmt: skip
    pc.subscribe("Traced")

    async def handle(msgs: list[StoredMessage], ctx: ConsumeContext) -> ConsumeResult:
        seen.extend(msgs)
        if msgs[0].reconsume_times < fail_times:
            return ConsumeResult.RECONSUME_LATER
        return ConsumeResult.SUCCESS

    pc.register(handle)
    return pc


@pytest.mark.integration
async def test_the_trace_topic_is_created_with_one_queue_and_routed(cluster: Cluster) -> None:
    cfg = cluster.broker.topics.get(TRACE_TOPIC)
    assert cfg is not None and (cfg.read_queue_nums, cfg.write_queue_nums) == (1, 1)
    async with AdminClient(cluster.ns, instance_name="trace-admin0") as admin:
        await check_for(lambda: admin.route(TRACE_TOPIC), timeout=5)


@pytest.mark.integration
async def test_a_message_traced_from_send_through_retry_and_dead_letters(cluster: Cluster) -> None:
    await cluster.create_topic("Traced", 1)
    ok_seen: list[StoredMessage] = []
    dead_seen: list[StoredMessage] = []
    async with Producer("TracePG", cluster.ns, instance_name="trace-p",
                        enable_msg_trace=True) as p:  # fmt: skip
        sent = await p.send(Message("Traced", b"order-1", tags="paid", keys=["order-1"]))
        untraced = await p.trace.flush() if p.trace else None  # sends stay unblocked
    assert untraced is None
    retry_once = consumer(cluster, "TraceOK", 1, ok_seen)
    give_up = consumer(cluster, "TraceDLQ", 99, dead_seen, max_reconsume_times=1)
    async with retry_once, give_up:
        await check_for(lambda: len(ok_seen) == 2 and len(dead_seen) == 2, timeout=15)
        await check_for(
            lambda: cluster.broker.store.get_max_offset("%DLQ%TraceDLQ", 0) == 1, timeout=5
        )
        for pc in (retry_once, give_up):
            assert pc.trace is not None
            await pc.trace.flush()
        async with AdminClient(cluster.ns, instance_name="trace-admin") as admin:

            async def complete() -> bool:
                t = await admin.query_trace(sent.msg_id)
                return len(t.consumes) == 4 and all(c.success is not None for c in t.consumes) \
                    and bool(t.dead_letters)  # fmt: skip

            await check_for(complete, timeout=10)
            trace = await admin.query_trace(sent.msg_id)
            assert (await admin.query_trace("no-such-message")).sends == []
        # The same through `rmqkit admin queryMsgTraceById`.
        args = ["admin", "queryMsgTraceById", "-n", cluster.ns, "-i", sent.msg_id, "--json"]
        shown = await asyncio.to_thread(CliRunner().invoke, cli, args)
        assert shown.exit_code == 0, shown.output
        rows = [(r["type"], r["group"], r["retryTimes"], r["status"])
                for r in json.loads(shown.output)]  # fmt: skip
        assert rows[0] == ("Pub", "TracePG", 0, "success")
        assert sorted(rows[1:]) == [
            ("DLQ", "TraceDLQ", 2, "in %DLQ%TraceDLQ"),  # the dead letter's reconsume times
            ("Sub", "TraceDLQ", 0, "failed"), ("Sub", "TraceDLQ", 1, "failed"),
            ("Sub", "TraceOK", 0, "failed"), ("Sub", "TraceOK", 1, "success"),
        ]  # fmt: skip
        missing = await asyncio.to_thread(CliRunner().invoke, cli, [
            "admin", "queryMsgTraceById", "-n", cluster.ns, "-i", "no-such-message"])  # fmt: skip
        assert missing.exit_code == 1 and "no trace of message no-such-message" in missing.output

    # The same in the dashboard: the message's page has the trace, the dead letter's a resend.
    dash = Dashboard(cluster.ns)
    await dash.start("127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession(base_url=dash.url) as http:
            async with http.get(f"/api/messages/{sent.offset_msg_id}") as r:
                timeline = (await r.json())["trace"]
            assert [(t["type"], t["group"], t["retryTimes"], t["status"]) for t in timeline] == [
                (row["type"], row["group"], row["retryTimes"], row["status"])
                for row in json.loads(shown.output)
            ]  # fmt: skip
            dead = trace.dead_letters["TraceDLQ"]
            async with http.get(f"/messages/{dead.offset_msg_id}") as r:
                assert "Dead letter of TraceDLQ" in await r.text()
            retried = cluster.broker.store.get_max_offset("%RETRY%TraceDLQ", 0)
            async with http.post(f"/messages/{dead.offset_msg_id}/resend",
                                 data={"_token": dash.token}) as r:  # fmt: skip
                assert r.status == 200, await r.text()
            assert cluster.broker.store.get_max_offset("%RETRY%TraceDLQ", 0) == retried + 1
            async with http.post(f"/messages/{sent.offset_msg_id}/resend",
                                 data={"_token": dash.token}) as r:  # fmt: skip
                assert r.status == 400 and "not in a dead-letter topic" in await r.text()
    finally:
        await dash.stop()

    # Stored: one send, by which group, where.
    (pub,) = trace.sends
    assert trace.stored and pub.group == "TracePG" and pub.success
    b = pub.beans[0]
    assert (b.topic, b.tags, b.keys, b.body_length) == ("Traced", "paid", "order-1", 7)
    assert b.offset_msg_id == sent.offset_msg_id and b.store_host == cluster.br
    assert b.msg_type is MessageType.Normal_Msg and b.client_host
    # Consumed: by both groups; TraceOK after one retry, TraceDLQ never.
    assert trace.groups == ["TraceDLQ", "TraceOK"]
    ok = trace.attempts("TraceOK")
    assert [(c.retry_times, c.success, c.result) for c in ok] == [
        (0, False, ConsumeReturnType.FAILED), (1, True, ConsumeReturnType.SUCCESS),
    ]  # fmt: skip
    dead = trace.attempts("TraceDLQ")
    assert [(c.retry_times, c.success) for c in dead] == [(0, False), (1, False)]
    assert trace.retried("TraceOK") and trace.retried("TraceDLQ")
    # Dead-lettered: in %DLQ%TraceDLQ only.
    assert set(trace.dead_letters) == {"TraceDLQ"}
    assert trace.dead_letters["TraceDLQ"].body == b"order-1"
    # The records themselves: in the trace topic, found by the message id, as Java keeps them.
    g = cluster.broker.store.get_message(TRACE_TOPIC, 0, 0, 32)
    stored = decode_records(g.body())
    assert all(sent.msg_id in m.keys or not any(
        c.beans[0].msg_id == sent.msg_id for c in decode_trace_data(m.body.decode())
    ) for m in stored)  # fmt: skip


@pytest.mark.integration
async def test_without_a_trace_topic_sends_still_succeed(tmp_path: Path) -> None:
    async with NameServer(NameServerSettings(host="127.0.0.1", listen_port=0)) as ns:
        settings = broker_settings(tmp_path / "store", f"127.0.0.1:{ns.port}",
                                   auto_create_topic_enable=False)  # fmt: skip
        async with Broker(settings) as broker:
            broker.topics.put(TopicConfig("Plain", 1, 1))
            broker.registration.register_soon()
            ns_addr = f"127.0.0.1:{ns.port}"
            async with Producer("NoTracePG", ns_addr, instance_name="notrace",
                                enable_msg_trace=True) as p:  # fmt: skip
                await check_for(lambda: p.publish_info("Plain"), timeout=5)
                r = await asyncio.wait_for(p.send(Message("Plain", b"x")), 5)
                assert p.trace is not None
                await p.trace.flush()
                assert r.msg_id and p.trace.send_failures == 1 and p.trace.messages_sent == 0
            assert broker.topics.get(TRACE_TOPIC) is None


@pytest.mark.integration
async def test_traces_queued_when_the_host_stops_are_not_sent_later(cluster: Cluster) -> None:
    await cluster.create_topic("Traced", 1)
    async with Producer("StopPG", cluster.ns, instance_name="trace-stop",
                        enable_msg_trace=True) as p:  # fmt: skip
        await p.send(Message("Traced", b"last words"))
        trace = p.trace
        assert trace is not None and len(trace.queue) == 1  # queued, not sent on the send path
    await trace.flush()
    # Sent before the stop, dropped after it, or cut short by it: never sent on a new connection.
    assert trace.messages_sent + trace.discarded + trace.send_failures == 1
    assert not trace.queue


@pytest.mark.integration
async def test_cloud_access_channel_traces_to_the_brokers_region_topic(tmp_path: Path) -> None:
    async with running_cluster(tmp_path, region_id="HZ-1", trace_on=True) as c:
        await c.create_topic("Regional", 1)
        region_topic = "rmq_sys_TRACE_DATA_HZ-1"
        seen: list[StoredMessage] = []
        async with Producer("CloudPG", c.ns, instance_name="cloud-p", enable_msg_trace=True,
                            access_channel="CLOUD") as p:  # fmt: skip
            sent = await p.send(Message("Regional", b"order-9", keys=["order-9"]))
            assert sent.region_id == "HZ-1"
            assert p.trace is not None
            await p.trace.flush()
        pc = PushConsumer("CloudCG", c.ns, instance_name="cloud-c", enable_msg_trace=True,
                          access_channel="CLOUD", consume_from_where="CONSUME_FROM_FIRST_OFFSET",
                          rebalance_interval_ms=300)  # fmt: skip
        pc.subscribe("Regional")

        async def handle(msgs: list[StoredMessage], ctx: ConsumeContext) -> ConsumeResult:
            seen.extend(msgs)
            return ConsumeResult.SUCCESS

        pc.register(handle)
        async with pc, AdminClient(c.ns, instance_name="cloud-admin") as admin:
            await check_for(lambda: seen, timeout=10)
            # what the broker stamped on the stored message, as Java's broker does
            assert seen[0].properties["MSG_REGION"] == "HZ-1"
            assert seen[0].properties["TRACE_ON"] == "true"
            assert pc.trace is not None
            await pc.trace.flush()

            async def complete() -> bool:
                t = await admin.query_trace(sent.msg_id, trace_topic=region_topic)
                return bool(t.sends) and len(t.consumes) == 1 and t.consumes[0].success is True

            await check_for(complete, timeout=10)
            trace = await admin.query_trace(sent.msg_id, trace_topic=region_topic)
        assert trace.sends[0].group == "CloudPG" and trace.groups == ["CloudCG"]
        assert c.broker.store.get_max_offset(TRACE_TOPIC, 0) <= 0  # nothing in the local topic


@pytest.mark.integration
async def test_cloud_records_without_a_region_are_dropped_as_java_drops_them() -> None:
    class Instance:  # never reached: nothing is sent
        pass

    d = TraceDispatcher(Instance(), access_channel="CLOUD")  # type: ignore[arg-type]
    bean = TraceBean("T", "ID", "OFF", None, None)
    assert d.trace_topic_of(TraceContext(TraceType.SubBefore, region_id="", beans=[bean])) is None
    assert d.trace_topic_of(TraceContext(TraceType.Pub, region_id="SH", beans=[bean])) == (
        "rmq_sys_TRACE_DATA_SH"
    )
    await d._send_batch([TraceContext(TraceType.SubBefore, region_id="", beans=[bean])])
    assert d.discarded == 1 and d.messages_sent == 0
