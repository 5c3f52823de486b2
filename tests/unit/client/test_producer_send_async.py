"""`Producer.send_async` against a scripted broker on loopback: the callback-driven first attempt,
retries in a task, timeouts, cancellation, and the results it builds."""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from rmqkit.client.message import Message, SendResult, SendStatus
from rmqkit.client.producer import Producer
from rmqkit.common.properties import Prop, decode_properties
from rmqkit.errors import (
    MessageIllegalError,
    RemotingTimeoutError,
    SystemBusyError,
)
from rmqkit.protocol.codes import RequestCode, ResponseCode
from rmqkit.protocol.command import RemotingCommand
from rmqkit.protocol.route import BrokerData, QueueData, TopicRouteData, encode_topic_route
from rmqkit.remoting.connection import Connection
from rmqkit.remoting.server import RemotingServer
from rmqkit.testing import check_for

TOPIC = "AsyncSends"
BROKER = "broker-a"
QUEUES = 4
_names = itertools.count()

OK = "ok"
SILENT = "silent"
"""Never answer."""
CLOSE = "close"
"""Close the connection instead of answering."""


@dataclass
class FakeBroker:
    """A NameServer and a broker in one RemotingServer; sends are answered as `script` says."""

    server: RemotingServer
    script: deque[str | int] = field(default_factory=deque)
    """What to do with the next sends: OK, SILENT, CLOSE or a response code; then OK."""
    sends: list[RemotingCommand] = field(default_factory=list)
    offsets: list[int] = field(default_factory=lambda: [0] * QUEUES)

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    def on_send(self, conn: Connection, cmd: RemotingCommand) -> RemotingCommand | None:
        self.sends.append(cmd)
        what = self.script.popleft() if self.script else OK
        if what == SILENT:
            return None
        if what == CLOSE:
            conn.close()
            return None
        if what != OK:
            return cmd.response(int(what), remark=f"scripted {what}")
        q = int(cmd.ext_fields["e"])
        offset = self.offsets[q]
        self.offsets[q] += 1
        return cmd.response(ResponseCode.SUCCESS, ext_fields={
            "msgId": f"7F0000010000{len(self.sends):020X}", "queueId": str(q),
            "queueOffset": str(offset),
        })  # fmt: skip


@pytest.fixture
async def broker() -> AsyncIterator[FakeBroker]:
    server = RemotingServer("127.0.0.1", 0)
    fake = FakeBroker(server)
    await server.start(serving=False)
    route = encode_topic_route(TopicRouteData(
        [QueueData(BROKER, QUEUES, QUEUES)], [BrokerData("c", BROKER, {0: fake.addr})],
    ))  # fmt: skip

    def ok(conn: Connection, cmd: RemotingCommand) -> RemotingCommand:
        return cmd.response(ResponseCode.SUCCESS)

    server.register(RequestCode.GET_ROUTEINFO_BY_TOPIC,
                    lambda conn, cmd: cmd.response(ResponseCode.SUCCESS, body=route))  # fmt: skip
    server.register(RequestCode.SEND_MESSAGE_V2, fake.on_send)
    for code in (RequestCode.HEART_BEAT, RequestCode.UNREGISTER_CLIENT):
        server.register(code, ok)
    await server.serve()
    try:
        yield fake
    finally:
        await server.stop()


def producer(broker: FakeBroker, **kwargs: Any) -> Producer:
    return Producer("PG", broker.addr, instance_name=f"send-async-{next(_names)}", **kwargs)


def uniq_key(cmd: RemotingCommand) -> str:
    return decode_properties(cmd.ext_fields["i"])[Prop.UNIQ_CLIENT_MESSAGE_ID_KEYIDX]


async def test_with_the_route_cached_the_request_is_written_before_it_returns(
    broker: FakeBroker,
) -> None:
    async with producer(broker) as p:
        await p.send(Message(TOPIC, b"first"))  # route lookup and connection
        conn = p.instance.remoting.cached(broker.addr)
        assert conn is not None
        fut = p.send_async(Message(TOPIC, b"second", tags="T", keys=["k"]))
        assert not isinstance(fut, asyncio.Task)  # no task per send
        assert len(conn.pending) == 1  # registered (and queued for writing) in the call
        result = await fut
        sent = broker.sends[-1]
        assert result == SendResult(
            SendStatus.SEND_OK, uniq_key(sent), f"7F0000010000{2:020X}", result.queue, 0,
            broker.addr,
        )  # fmt: skip
        assert (result.queue.topic, result.queue.broker_name) == (TOPIC, BROKER)
        assert result.queue.queue_id == int(sent.ext_fields["e"])
        assert decode_properties(sent.ext_fields["i"])[Prop.TAGS] == "T"
        assert not conn.pending


async def test_the_first_send_async_looks_the_route_up_in_a_task(broker: FakeBroker) -> None:
    async with producer(broker) as p:
        fut = p.send_async(Message(TOPIC, b"x"))
        assert isinstance(fut, asyncio.Task)
        assert (await fut).status is SendStatus.SEND_OK


async def test_gathered_sends_get_distinct_ids_round_robin(broker: FakeBroker) -> None:
    async with producer(broker) as p:
        await p.send(Message(TOPIC, b"warm-up"))
        results = await asyncio.gather(*(p.send_async(Message(TOPIC, b"x")) for _ in range(40)))
    assert len({r.msg_id for r in results}) == 40
    assert {r.msg_id for r in results} == {uniq_key(c) for c in broker.sends[1:]}
    per_queue = [sum(r.queue.queue_id == q for r in results) for q in range(QUEUES)]
    assert per_queue == [10] * QUEUES


async def test_a_retriable_refusal_is_retried_with_the_same_message_id(
    broker: FakeBroker,
) -> None:
    async with producer(broker) as p:
        await p.send(Message(TOPIC, b"warm-up"))
        broker.script.extend([ResponseCode.SYSTEM_BUSY])
        result = await p.send_async(Message(TOPIC, b"x"))
    first, retry = broker.sends[1:]
    assert result.status is SendStatus.SEND_OK
    assert uniq_key(first) == uniq_key(retry) == result.msg_id


async def test_a_refusal_that_is_not_retried_fails_the_future(broker: FakeBroker) -> None:
    async with producer(broker) as p:
        await p.send(Message(TOPIC, b"warm-up"))
        broker.script.append(ResponseCode.MESSAGE_ILLEGAL)
        with pytest.raises(MessageIllegalError, match="scripted 13"):
            await p.send_async(Message(TOPIC, b"x"))
    assert len(broker.sends) == 2


async def test_when_the_retries_run_out_the_last_error_is_raised(broker: FakeBroker) -> None:
    async with producer(broker, retry_times_when_send_async_failed=1) as p:
        await p.send(Message(TOPIC, b"warm-up"))
        broker.script.extend([ResponseCode.SYSTEM_BUSY, ResponseCode.SYSTEM_BUSY])
        with pytest.raises(SystemBusyError):
            await p.send_async(Message(TOPIC, b"x"))
    assert len(broker.sends) == 3


async def test_a_timeout_fails_the_send_and_leaves_nothing_pending(broker: FakeBroker) -> None:
    async with producer(broker, retry_times_when_send_async_failed=0) as p:
        await p.send(Message(TOPIC, b"warm-up"))
        conn = p.instance.remoting.cached(broker.addr)
        assert conn is not None
        broker.script.append(SILENT)
        with pytest.raises(
            RemotingTimeoutError, match=rf"code 310 from {broker.addr} within 0.05s"
        ):
            await p.send_async(Message(TOPIC, b"x"), timeout_ms=50)
        assert not conn.pending


async def test_a_connection_closed_under_a_send_is_retried_on_a_new_one(
    broker: FakeBroker,
) -> None:
    async with producer(broker) as p:
        await p.send(Message(TOPIC, b"warm-up"))
        first = p.instance.remoting.cached(broker.addr)
        broker.script.append(CLOSE)
        result = await p.send_async(Message(TOPIC, b"x"))
        assert result.status is SendStatus.SEND_OK
        assert p.instance.remoting.cached(broker.addr) is not first
    assert uniq_key(broker.sends[1]) == uniq_key(broker.sends[2]) == result.msg_id


async def test_a_cancelled_send_drops_its_answer(broker: FakeBroker) -> None:
    async with producer(broker) as p:
        await p.send(Message(TOPIC, b"warm-up"))
        conn = p.instance.remoting.cached(broker.addr)
        assert conn is not None
        fut = p.send_async(Message(TOPIC, b"x"))
        fut.cancel()
        await check_for(lambda: len(broker.sends) == 2 and not conn.pending)
        assert fut.cancelled()
        assert (await p.send_async(Message(TOPIC, b"after"))).status is SendStatus.SEND_OK


async def test_an_illegal_message_raises_at_once(broker: FakeBroker) -> None:
    async with producer(broker) as p:
        with pytest.raises(MessageIllegalError, match="empty"):
            p.send_async(Message(TOPIC, b""))


async def test_the_trace_hook_sees_the_request_and_the_result(broker: FakeBroker) -> None:
    seen: list[tuple[RemotingCommand, SendResult]] = []

    class Recorder:
        def sent(
            self, prod: Producer, msg: Message, cmd: RemotingCommand, result: SendResult
        ) -> SendResult:
            seen.append((cmd, result))
            return result

    async with producer(broker) as p:
        await p.send(Message(TOPIC, b"warm-up"))
        p.trace = Recorder()  # type: ignore[assignment]
        result = await p.send_async(Message(TOPIC, b"x"))
    ((cmd, traced),) = seen
    assert traced is result and cmd.ext_fields["b"] == TOPIC and uniq_key(cmd) == result.msg_id
