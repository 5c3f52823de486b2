"""A consumer's running info: the figures' windows, the body's shape, a process queue's state."""

from __future__ import annotations

import orjson

from rmqkit.client.admin_consumers import decode_running_info
from rmqkit.client.instance import ClientConfig, ClientInstance
from rmqkit.client.message import MessageQueue
from rmqkit.client.process_queue import ProcessQueue
from rmqkit.client.running_info import (
    ConsumerStats,
    direct_result_body,
    process_stacks,
    running_info_body,
)
from rmqkit.common.subscription import SubscriptionData
from rmqkit.protocol.codes import RequestCode, ResponseCode
from rmqkit.protocol.command import RemotingCommand
from rmqkit.protocol.record import StoredMessage


def test_rates_are_over_the_last_minute_and_failures_over_the_hour() -> None:
    s = ConsumerStats()
    c = s.topic("T")
    assert s.status("T", 0.0)["pullTPS"] == 0.0  # nothing sampled yet
    s.sample(0.0)
    c.pulls, c.pulled, c.pull_rt_ms = 2, 300, 10.0
    c.calls, c.consume_rt_ms, c.ok, c.failed = 300, 600.0, 290, 10
    st = s.status("T", 30.0)
    assert st == {"pullRT": 5.0, "pullTPS": 10.0, "consumeRT": 2.0, "consumeOKTPS": 290 / 30,
                  "consumeFailedTPS": 10 / 30, "consumeFailedMsgs": 10}  # fmt: skip
    for t in range(10, 130, 10):  # the sampler goes on; nothing more happens
        s.sample(float(t))
    st = s.status("T", 130.0)
    assert st["pullTPS"] == 0.0 and st["consumeOKTPS"] == 0.0 and st["pullRT"] == 0.0
    assert st["consumeFailedMsgs"] == 10  # still within the hour
    for t in range(130, 3700, 10):
        s.sample(float(t))
    assert s.status("T", 3700.0)["consumeFailedMsgs"] == 0
    assert len(s._minute) <= 8 and len(s._hour) <= 62  # bounded however long it runs


def test_a_topic_first_seen_after_a_sample_counts_from_zero() -> None:
    s = ConsumerStats()
    s.sample(0.0)
    s.topic("New").ok = 60
    assert s.status("New", 60.0)["consumeOKTPS"] == 1.0


def test_running_info_body_reads_back_with_fastjson_queue_keys() -> None:
    pq = ProcessQueue()
    msgs = [StoredMessage("T", b"x" * 10, {}, 1, 0, off, 0, 0, 0, (b"\x7f\0\0\1", 1), 0,
                          (b"\x7f\0\0\1", 2), 0, 0, 0, 0) for off in (7, 8, 9)]  # fmt: skip
    pq.put(msgs)
    pq.remove(msgs[:1])
    info = pq.info(8, locked=True)
    assert info["cachedMsgMinOffset"] == 8 and info["cachedMsgMaxOffset"] == 9
    assert info["cachedMsgCount"] == 2 and info["locked"] and info["lastConsumeTimestamp"] > 0
    body = running_info_body(
        {"consumerGroup": "G", "PROP_CONSUME_TYPE": "CONSUME_PASSIVELY"},
        [SubscriptionData.build("T", "a || b")],
        {("T", "broker-a", 1): info},
        {"T": {"pullTPS": 1.5}},
        None,
    )
    assert b'{"brokerName":"broker-a","queueId":1,"topic":"T"}:{' in body  # fastjson's key form
    got = decode_running_info(body)
    assert got.push and got.queues == {MessageQueue("T", "broker-a", 1): info}
    assert got.subscriptions[0]["tagsSet"] == ["a", "b"] and got.status == {"T": {"pullTPS": 1.5}}
    assert got.jstack is None and got.extra == {}


def test_direct_result_and_stacks() -> None:
    r = orjson.loads(direct_result_body("CR_LATER", order=True, spent_ms=3))
    assert r == {"order": True, "autoCommit": True, "consumeResult": "CR_LATER", "remark": None,
                 "spentTimeMills": 3}  # fmt: skip
    assert "test_direct_result_and_stacks" in process_stacks()


def test_a_group_this_client_does_not_consume_for_is_refused_as_java_does() -> None:
    inst = ClientInstance(ClientConfig("127.0.0.1:9", "unit"))
    for code in (RequestCode.GET_CONSUMER_RUNNING_INFO, RequestCode.CONSUME_MESSAGE_DIRECTLY):
        cmd = RemotingCommand(code, ext_fields={"consumerGroup": "G", "clientId": "x"})
        resp = inst._on_server_request(None, cmd)  # type: ignore[arg-type]
        assert isinstance(resp, RemotingCommand) and resp.code == ResponseCode.SYSTEM_ERROR
        assert resp.remark == "The Consumer Group G not exist in this consumer"
    inst.running_info_hooks["G"] = lambda jstack: b"{}" if not jstack else b"[]"
    cmd = RemotingCommand(RequestCode.GET_CONSUMER_RUNNING_INFO,
                          ext_fields={"consumerGroup": "G", "jstackEnable": "true"})  # fmt: skip
    resp = inst._on_server_request(None, cmd)  # type: ignore[arg-type]
    assert isinstance(resp, RemotingCommand) and bytes(resp.body) == b"[]"

