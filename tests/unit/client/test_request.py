"""Request-reply, client side: building replies, the request registry, reading a pushed reply."""

from __future__ import annotations

import asyncio
import zlib

import pytest

from rmqkit.client.request import (
    RequestRegistry,
    create_reply,
    decode_pushed_reply,
    is_reply,
    new_correlation_id,
)
from rmqkit.common.properties import REPLY_MESSAGE_FLAG, Prop, encode_properties, reply_topic
from rmqkit.errors import ConfigurationError, RequestTimeoutError
from rmqkit.protocol.codes import COMPRESSION_ZLIB, RequestCode, ResponseCode, SysFlag
from rmqkit.protocol.command import RemotingCommand
from rmqkit.protocol.record import StoredMessage, decode_record, encode_record, pack_host
from rmqkit.testing import check_for

REQUEST_PROPS = {
    Prop.CLUSTER: "East",
    Prop.MESSAGE_REPLY_TO_CLIENT: "10.0.0.1@req@42",
    Prop.CORRELATION_ID: "c-1",
    Prop.MESSAGE_TTL: "3000",
    "user": "kept on the request only",
}


def request(props: dict[str, str] | None = None) -> StoredMessage:
    properties = REQUEST_PROPS if props is None else props
    return decode_record(
        encode_record(topic="orders", body=b"ask", properties=encode_properties(properties))
    )


def reply_with(cid: str, body: bytes = b"answer") -> StoredMessage:
    return decode_record(
        encode_record(
            topic="East_REPLY_TOPIC",
            body=body,
            properties=encode_properties({Prop.CORRELATION_ID: cid}),
        )
    )


# -- create_reply ----------------------------------------------------------------------------------


def test_a_reply_goes_to_the_clusters_reply_topic_with_the_requests_ids() -> None:
    reply = create_reply(request(), b"answer")
    assert reply.topic == reply_topic("East") == "East_REPLY_TOPIC"
    assert reply.body == b"answer"
    assert reply.properties == {
        Prop.MESSAGE_TYPE: REPLY_MESSAGE_FLAG,
        Prop.CORRELATION_ID: "c-1",
        Prop.MESSAGE_REPLY_TO_CLIENT: "10.0.0.1@req@42",
        Prop.MESSAGE_TTL: "3000",
    }
    assert is_reply(reply)


def test_user_properties_are_added_but_cannot_redirect_the_reply() -> None:
    reply = create_reply(
        request(),
        b"x",
        properties={"status": "ok", Prop.CORRELATION_ID: "forged", Prop.MESSAGE_TYPE: "normal"},
    )
    assert reply.properties["status"] == "ok"
    assert reply.properties[Prop.CORRELATION_ID] == "c-1"
    assert reply.properties[Prop.MESSAGE_TYPE] == REPLY_MESSAGE_FLAG


def test_a_request_without_ttl_gives_a_reply_without_ttl() -> None:
    props = {k: v for k, v in REQUEST_PROPS.items() if k != Prop.MESSAGE_TTL}
    assert Prop.MESSAGE_TTL not in create_reply(request(props), b"x").properties


@pytest.mark.parametrize(
    ("dropped", "named"),
    [
        ([Prop.CLUSTER], "CLUSTER property"),
        ([Prop.MESSAGE_REPLY_TO_CLIENT], "REPLY_TO_CLIENT property"),
        ([Prop.CLUSTER, Prop.MESSAGE_REPLY_TO_CLIENT], "CLUSTER, REPLY_TO_CLIENT properties"),
    ],
)
def test_replying_to_a_message_that_was_not_a_request_is_refused(
    dropped: list[str], named: str
) -> None:
    props = {k: v for k, v in REQUEST_PROPS.items() if k not in dropped}
    with pytest.raises(ConfigurationError, match=named) as info:
        create_reply(request(props), b"x")
    assert isinstance(info.value, ValueError)
    assert "request()" in str(info.value) and "orders" in str(info.value)


def test_plain_messages_are_not_replies() -> None:
    from rmqkit.client.message import Message

    assert not is_reply(Message("t", b"x"))
    assert len({new_correlation_id() for _ in range(100)}) == 100


# -- RequestRegistry ---------------------------------------------------------------------------


async def test_a_reply_completes_the_request_with_its_correlation_id() -> None:
    reg = RequestRegistry()
    a = reg.register("a", 10_000, topic="t")
    b = reg.register("b", 10_000, topic="t")
    assert reg.complete(reply_with("b", b"for b"))
    assert b.future.result().body == b"for b" and not a.future.done()
    assert reg.complete(reply_with("a", b"for a"))
    assert a.future.result().body == b"for a"
    assert len(reg) == 0 and reg.dropped == 0


async def test_a_reply_nobody_waits_for_is_dropped() -> None:
    reg = RequestRegistry()
    pending = reg.register("a", 10_000)
    assert not reg.complete(reply_with("zzz"))
    assert not pending.future.done() and reg.dropped == 1
    assert reg.complete(reply_with("a"))
    assert not reg.complete(reply_with("a"))  # a duplicate
    assert reg.dropped == 2


async def test_expire_fails_the_requests_past_their_deadline() -> None:
    reg = RequestRegistry()
    short = reg.register("short", 1_000, topic="orders")
    long = reg.register("long", 60_000, topic="orders")
    assert reg.expire(now=short.deadline) == []  # not yet: only once the deadline has passed
    assert reg.expire(now=short.deadline + 0.001) == ["short"]
    with pytest.raises(RequestTimeoutError, match="no reply to request short to orders") as info:
        short.future.result()
    assert (info.value.correlation_id, info.value.timeout_ms) == ("short", 1_000)
    assert not long.future.done() and list(reg.pending) == ["long"]
    assert not reg.complete(reply_with("short"))  # its reply comes too late
    reg.discard("long")
    assert long.future.cancelled() and len(reg) == 0


async def test_a_request_expires_by_itself() -> None:
    reg = RequestRegistry()
    pending = reg.register("soon", 1, topic="t")
    await check_for(lambda: pending.future.done())
    assert isinstance(pending.future.exception(), RequestTimeoutError)
    assert len(reg) == 0


# -- PUSH_REPLY_MESSAGE_TO_CLIENT ------------------------------------------------------------------


def push(body: bytes = b"answer", sys_flag: int = 0, **fields: str) -> RemotingCommand:
    ext = {
        "producerGroup": "REPLIER", "topic": "East_REPLY_TOPIC", "defaultTopic": "TBW102",
        "defaultTopicQueueNums": "4", "queueId": "0", "sysFlag": str(sys_flag),
        "bornTimestamp": "1700000000000", "flag": "3", "reconsumeTimes": "0",
        "unitMode": "false", "bornHost": "10.0.0.2:50000", "storeHost": "10.0.0.3:10911",
        "storeTimestamp": "1700000000100",
        "properties": encode_properties({Prop.CORRELATION_ID: "c-1", Prop.MESSAGE_TYPE: "reply"}),
    }  # fmt: skip
    ext.update(fields)
    return RemotingCommand(RequestCode.PUSH_REPLY_MESSAGE_TO_CLIENT, ext_fields=ext, body=body)


def test_a_pushed_reply_is_read_as_a_message() -> None:
    m = decode_pushed_reply(push())
    assert (m.topic, m.body, m.queue_id, m.flag) == ("East_REPLY_TOPIC", b"answer", 0, 3)
    assert (m.born_timestamp, m.store_timestamp) == (1700000000000, 1700000000100)
    assert m.born_host == pack_host("10.0.0.2", 50000)
    assert m.store_host == pack_host("10.0.0.3", 10911)
    assert m.properties[Prop.CORRELATION_ID] == "c-1"
    assert int(m.properties[Prop.REPLY_MESSAGE_ARRIVE_TIME]) > 0


def test_a_compressed_pushed_reply_is_inflated() -> None:
    flag = int(SysFlag.COMPRESSED) | COMPRESSION_ZLIB
    assert decode_pushed_reply(push(zlib.compress(b"big" * 100), flag)).body == b"big" * 100
    # A body that does not inflate is kept as it came, as RocketMQ does.
    assert decode_pushed_reply(push(b"not zlib", flag)).body == b"not zlib"


def test_odd_hosts_and_missing_numbers_do_not_break_the_reply() -> None:
    m = decode_pushed_reply(
        push(bornHost="/127.0.0.1:5", storeHost="nonsense", reconsumeTimes="", flag="x")
    )
    assert m.born_host == pack_host("127.0.0.1", 5) and m.store_host[1] == 0
    assert (m.reconsume_times, m.flag) == (0, 0)


async def test_the_push_handler_completes_the_request_and_always_answers_success() -> None:
    reg = RequestRegistry()
    pending = reg.register("c-1", 10_000)
    conn = _FakeConn()
    resp = reg.on_push_reply(conn, push())  # type: ignore[arg-type]
    assert resp.code == ResponseCode.SUCCESS
    assert pending.future.result().body == b"answer"
    late = reg.on_push_reply(conn, push())  # type: ignore[arg-type]
    assert late.code == ResponseCode.SUCCESS and reg.dropped == 1
    broken = push()
    del broken.ext_fields["topic"]
    bad = reg.on_push_reply(conn, broken)  # type: ignore[arg-type]
    assert bad.code == ResponseCode.SYSTEM_ERROR and reg.dropped == 1


class _FakeConn:
    peer = "127.0.0.1:10911"


async def test_registered_futures_belong_to_the_running_loop() -> None:
    reg = RequestRegistry()
    assert reg.register("x", 1_000).future.get_loop() is asyncio.get_running_loop()
    reg.discard("x")
