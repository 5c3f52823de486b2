"""Plain ACL permissions (RocketMQ's `Permission` and `PlainAccessResource.parse`): bits, the
check, and what each request code needs on which topics and groups."""

from __future__ import annotations

import pytest

from rmqkit.common.names import TRACE_TOPIC
from rmqkit.protocol.codes import RequestCode
from rmqkit.protocol.command import RemotingCommand
from rmqkit.protocol.heartbeat import ConsumerEntry, HeartbeatData, SubscriptionEntry
from rmqkit.server.acl.permission import (
    ADMIN_CODES,
    ANY,
    DENY,
    PUB,
    SUB,
    check_permission,
    describe,
    is_group,
    is_known_perm,
    is_trace_write,
    needed_resources,
    parse_perm,
)


def test_bits_are_rocketmqs() -> None:
    assert (DENY, ANY, PUB, SUB) == (1, 2, 4, 8)


def test_admin_codes_are_rocketmqs() -> None:
    assert {int(c) for c in ADMIN_CODES} == {17, 25, 215, 200, 207}


@pytest.mark.parametrize(
    ("text", "bits"),
    [
        ("PUB", PUB),
        ("SUB", SUB),
        ("PUB|SUB", PUB | SUB),
        ("SUB|PUB", PUB | SUB),
        ("DENY", DENY),
        ("  PUB ", PUB),
        ("\tSUB|PUB\n", PUB | SUB),
        ("pub", DENY),  # case matters, as in Java's switch
        ("PUB | SUB", DENY),
        ("ANY", DENY),
        ("ALL", DENY),
        ("", DENY),
        (None, DENY),
    ],
)
def test_parse_perm(text: str | None, bits: int) -> None:
    assert parse_perm(text) == bits


@pytest.mark.parametrize(
    ("text", "known"),
    [("PUB", True), (" SUB ", True), ("SUB|PUB", True), ("DENY", True), ("pub", False),
     ("ANY", False), ("", False)],
)  # fmt: skip
def test_is_known_perm(text: str, known: bool) -> None:
    assert is_known_perm(text) is known


@pytest.mark.parametrize(
    ("needed", "owned", "ok"),
    [
        (PUB, PUB, True),
        (SUB, SUB, True),
        (PUB, SUB, False),
        (SUB, PUB, False),
        (PUB, PUB | SUB, True),
        (SUB, PUB | SUB, True),
        (PUB | SUB, PUB, True),  # any needed bit owned
        (PUB, 0, False),
        # an owned DENY refuses whatever else is owned
        (PUB, DENY, False),
        (PUB, DENY | PUB, False),
        (SUB, DENY | PUB | SUB, False),
        (ANY, DENY | SUB, False),
        # a needed ANY is met by PUB or SUB
        (ANY, PUB, True),
        (ANY, SUB, True),
        (ANY, PUB | SUB, True),
        (ANY, DENY, False),
        (ANY, 0, False),
        (ANY | PUB, SUB, True),
        (DENY, DENY, False),
    ],
)
def test_check_permission(needed: int, owned: int, ok: bool) -> None:
    assert check_permission(needed, owned) is ok


def _cmd(code: int, ext: dict[str, str] | None = None, body: bytes = b"") -> RemotingCommand:
    return RemotingCommand(code=code, ext_fields=ext or {}, body=body)


RC = RequestCode


@pytest.mark.parametrize(
    ("code", "ext", "needed"),
    [
        # SEND_MESSAGE: PUB on the topic; a group's retry topic needs SUB on that group
        (RC.SEND_MESSAGE, {"topic": "orders", "producerGroup": "pg"}, {"orders": PUB}),
        (RC.SEND_MESSAGE, {"topic": "%RETRY%g1", "producerGroup": "pg"}, {"%RETRY%g1": SUB}),
        (RC.SEND_MESSAGE, {"producerGroup": "pg"}, {}),
        # SEND_MESSAGE_V2 and SEND_BATCH_MESSAGE: the topic is "b" (the group "a")
        (RC.SEND_MESSAGE_V2, {"a": "pg", "b": "orders"}, {"orders": PUB}),
        (RC.SEND_MESSAGE_V2, {"a": "pg", "b": "%RETRY%g1"}, {"%RETRY%g1": SUB}),
        (RC.SEND_MESSAGE_V2, {"topic": "ignored", "b": "orders"}, {"orders": PUB}),
        (RC.SEND_MESSAGE_V2, {"topic": "ignored"}, {}),
        (RC.SEND_BATCH_MESSAGE, {"a": "pg", "b": "orders"}, {"orders": PUB}),
        (RC.SEND_BATCH_MESSAGE, {"a": "pg", "b": "%RETRY%g1"}, {"%RETRY%g1": SUB}),
        # CONSUMER_SEND_MSG_BACK: SUB on the group
        (RC.CONSUMER_SEND_MSG_BACK, {"group": "g1", "offset": "7"}, {"%RETRY%g1": SUB}),
        (RC.CONSUMER_SEND_MSG_BACK, {"offset": "7"}, {}),
        # pulls: SUB on the topic and on the group
        (RC.PULL_MESSAGE, {"consumerGroup": "g1", "topic": "orders", "queueId": "0"},
         {"orders": SUB, "%RETRY%g1": SUB}),
        (RC.LITE_PULL_MESSAGE, {"consumerGroup": "g1", "topic": "orders"},
         {"orders": SUB, "%RETRY%g1": SUB}),
        (RC.PULL_MESSAGE, {"topic": "orders"}, {"orders": SUB}),
        # QUERY_MESSAGE: SUB on the topic
        (RC.QUERY_MESSAGE, {"topic": "orders", "key": "k", "maxNum": "32"}, {"orders": SUB}),
        # UNREGISTER_CLIENT and GET_CONSUMER_LIST_BY_GROUP: SUB on the consumer group
        (RC.UNREGISTER_CLIENT, {"clientID": "c1", "consumerGroup": "g1"}, {"%RETRY%g1": SUB}),
        (RC.UNREGISTER_CLIENT, {"clientID": "c1", "producerGroup": "pg"}, {}),
        (RC.GET_CONSUMER_LIST_BY_GROUP, {"consumerGroup": "g1"}, {"%RETRY%g1": SUB}),
        # consumer offsets: SUB on the group and on the topic
        (RC.UPDATE_CONSUMER_OFFSET,
         {"consumerGroup": "g1", "topic": "orders", "queueId": "0", "commitOffset": "5"},
         {"%RETRY%g1": SUB, "orders": SUB}),
        (RC.QUERY_CONSUMER_OFFSET, {"consumerGroup": "g1", "topic": "orders", "queueId": "0"},
         {"%RETRY%g1": SUB, "orders": SUB}),
        # anything else: no resource (signature, and admin codes an admin, only)
        (RC.GET_ROUTEINFO_BY_TOPIC, {"topic": "orders"}, {}),
        (RC.UPDATE_AND_CREATE_TOPIC, {"topic": "orders"}, {}),
        (RC.GET_ALL_SUBSCRIPTIONGROUP_CONFIG, {}, {}),
        (99999, {"topic": "orders", "consumerGroup": "g1"}, {}),
    ],
)  # fmt: skip
def test_needed_resources(code: int, ext: dict[str, str], needed: dict[str, int]) -> None:
    assert needed_resources(_cmd(code, ext)) == needed


def test_heartbeat_needs_sub_on_each_consumer_group_and_subscribed_topic() -> None:
    body = HeartbeatData(
        client_id="10.0.0.1@1",
        producer_groups=["pg"],
        consumers=[
            ConsumerEntry(
                "g1", subscriptions=[SubscriptionEntry("orders"), SubscriptionEntry("%RETRY%g1")]
            ),
            ConsumerEntry("g2", subscriptions=[SubscriptionEntry("audit", "TagA || TagB")]),
            ConsumerEntry("g3"),
        ],
    ).encode()
    assert needed_resources(_cmd(RC.HEART_BEAT, {}, body)) == {
        "%RETRY%g1": SUB,
        "orders": SUB,
        "%RETRY%g2": SUB,
        "audit": SUB,
        "%RETRY%g3": SUB,
    }


def test_producer_only_heartbeat_needs_nothing() -> None:
    body = HeartbeatData(client_id="10.0.0.1@1", producer_groups=["pg"]).encode()
    assert needed_resources(_cmd(RC.HEART_BEAT, {}, body)) == {}


def test_heartbeat_from_a_memoryview_body() -> None:
    body = HeartbeatData("c", consumers=[ConsumerEntry("g1")]).encode()
    cmd = RemotingCommand(code=RC.HEART_BEAT, body=memoryview(body))
    assert needed_resources(cmd) == {"%RETRY%g1": SUB}


@pytest.mark.parametrize(
    "body", [b"", b"not json", b"[]", b'{"consumerDataSet": [{"groupName": "g1"}]}']
)
def test_bad_heartbeat_body_needs_nothing(body: bytes) -> None:
    # The last one has no clientID: the heartbeat processor refuses it, not the ACL.
    assert needed_resources(_cmd(RC.HEART_BEAT, {}, body)) == {}


@pytest.mark.parametrize(
    ("resource", "text"),
    [
        ("%RETRY%g1", "group:g1"),
        ("orders", "topic:orders"),
        ("%DLQ%g1", "topic:%DLQ%g1"),
        ("%RETRY%", "group:"),
        ("x%RETRY%g", "topic:x%RETRY%g"),
    ],
)
def test_describe(resource: str, text: str) -> None:
    assert describe(resource) == text


def test_is_group() -> None:
    assert is_group("%RETRY%g1")
    assert not is_group("orders")
    assert not is_group("%DLQ%g1")


@pytest.mark.parametrize(
    ("resources", "trace"),
    [
        ({TRACE_TOPIC: PUB}, True),
        ({TRACE_TOPIC: PUB | SUB}, True),
        ({TRACE_TOPIC: SUB}, False),
        ({"orders": PUB}, False),
        ({}, False),
    ],
)
def test_is_trace_write(resources: dict[str, int], trace: bool) -> None:
    assert is_trace_write(resources) is trace


def test_a_trace_send_is_a_trace_write() -> None:
    needed = needed_resources(_cmd(RC.SEND_MESSAGE_V2, {"a": "pg", "b": TRACE_TOPIC}))
    assert is_trace_write(needed)
    pulled = needed_resources(_cmd(RC.PULL_MESSAGE, {"consumerGroup": "g", "topic": TRACE_TOPIC}))
    assert not is_trace_write(pulled)
