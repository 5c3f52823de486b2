"""MemoryBroker: transactional messages (half messages, commit, rollback, UNKNOWN and the
check-back on the fake clock) and request-reply (replies routed to the waiting request)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from rmqkit.client.message import Message, SendResult
from rmqkit.client.push_consumer import ConsumeContext
from rmqkit.client.request import create_reply
from rmqkit.client.transaction import TransactionState
from rmqkit.common.names import TRANS_HALF_TOPIC
from rmqkit.common.properties import Prop
from rmqkit.errors import RequestTimeoutError, SystemError_
from rmqkit.protocol.codes import TRANSACTION_TYPE_MASK, SysFlag
from rmqkit.protocol.record import StoredMessage
from rmqkit.testing.memory import (
    FakeClock,
    MemoryBroker,
    MemoryProducer,
    MemoryTransactionProducer,
)

from .memory_helpers import Sink, start_consumer

T0 = 1_700_000_000.0
COMMIT, ROLLBACK, UNKNOWN = (
    TransactionState.COMMIT, TransactionState.ROLLBACK, TransactionState.UNKNOWN,
)  # fmt: skip


@pytest.fixture
async def broker() -> AsyncIterator[MemoryBroker]:
    b = MemoryBroker(FakeClock(T0))
    yield b
    await b.close()


class Checks:
    """A checker that answers from a table (UNKNOWN by default) and records what it saw."""

    def __init__(self) -> None:
        self.answers: dict[bytes, TransactionState] = {}
        self.seen: list[StoredMessage] = []

    async def __call__(self, m: StoredMessage) -> TransactionState:
        self.seen.append(m)
        return self.answers.get(m.body, UNKNOWN)


@pytest.fixture
async def checks() -> Checks:
    return Checks()


@pytest.fixture
async def tx(broker: MemoryBroker, checks: Checks) -> MemoryTransactionProducer:
    p = MemoryTransactionProducer(broker, "tx-group", checker=checks)
    await p.start()
    return p


class LocalTx:
    """A local transaction that answers `state` and records the half message's send result."""

    def __init__(self, state: TransactionState) -> None:
        self.state = state
        self.seen: list[SendResult] = []

    async def __call__(self, msg: Message, sent: SendResult) -> TransactionState:
        self.seen.append(sent)
        return self.state


# -- transactions -------------------------------------------------------------------------------


async def test_a_committed_transaction_becomes_visible(
    broker: MemoryBroker, tx: MemoryTransactionProducer
) -> None:
    sink = Sink()
    await start_consumer(broker, "g", "orders", sink)
    execute = LocalTx(COMMIT)
    result = await tx.send_in_transaction(Message("orders", b"o-1", tags="created"), execute)
    assert result.state is COMMIT and execute.seen == [result.send]
    await broker.drain()
    [m] = sink.seen
    assert (m.msg_id, m.tags, m.body) == (result.send.msg_id, "created", b"o-1")
    assert m.sys_flag & TRANSACTION_TYPE_MASK == SysFlag.TRANSACTION_COMMIT
    assert Prop.TRANSACTION_PREPARED not in m.properties and Prop.REAL_TOPIC not in m.properties
    assert m.properties[Prop.PRODUCER_GROUP] == "tx-group"
    assert broker.half_messages() == []


async def test_a_rolled_back_transaction_is_never_delivered(
    broker: MemoryBroker, tx: MemoryTransactionProducer, checks: Checks
) -> None:
    await tx.send_in_transaction(Message("orders", b"o-1"), LocalTx(ROLLBACK))
    await broker.advance(3600)
    assert broker.messages("orders") == [] and broker.half_messages() == []
    assert checks.seen == []


async def test_an_exception_in_the_local_transaction_rolls_back_and_is_raised(
    broker: MemoryBroker, tx: MemoryTransactionProducer
) -> None:
    async def fails(msg: Message, sent: SendResult) -> TransactionState:
        raise RuntimeError("db down")

    with pytest.raises(RuntimeError, match="db down"):
        await tx.send_in_transaction(Message("orders", b"o-1"), fails)
    assert broker.half_messages() == [] and broker.messages("orders") == []


async def test_an_unknown_transaction_stays_half_until_a_check_commits_it(
    broker: MemoryBroker, tx: MemoryTransactionProducer, checks: Checks
) -> None:
    result = await tx.send_in_transaction(Message("orders", b"o-1", tags="t"), LocalTx(UNKNOWN))
    await broker.drain()
    [half] = broker.half_messages()
    assert half.topic == TRANS_HALF_TOPIC and half.properties[Prop.REAL_TOPIC] == "orders"
    assert broker.messages("orders") == []
    assert await broker.check_transactions() == {result.send.msg_id: UNKNOWN}
    checks.answers[b"o-1"] = COMMIT
    assert await broker.check_transactions() == {result.send.msg_id: COMMIT}
    seen = checks.seen[-1]
    assert (seen.msg_id, seen.properties[Prop.TRANSACTION_CHECK_TIMES]) == (result.send.msg_id, "2")
    [m] = broker.messages("orders")
    assert m.msg_id == result.send.msg_id and broker.half_messages() == []


async def test_the_broker_checks_unknown_transactions_every_interval(
    broker: MemoryBroker, tx: MemoryTransactionProducer, checks: Checks
) -> None:
    checks.answers[b"late"] = COMMIT
    checks.answers[b"no"] = ROLLBACK
    for body in (b"late", b"no"):
        await tx.send_in_transaction(Message("orders", body), LocalTx(UNKNOWN))
    await broker.advance(59)
    assert checks.seen == []
    await broker.advance(1)
    assert sorted(m.body for m in checks.seen) == [b"late", b"no"]
    assert [m.body for m in broker.messages("orders")] == [b"late"]
    assert broker.half_messages() == []


async def test_an_unanswered_transaction_is_discarded_after_the_last_check(
    broker: MemoryBroker, tx: MemoryTransactionProducer, checks: Checks
) -> None:
    await tx.send_in_transaction(Message("orders", b"o-1"), LocalTx(UNKNOWN))
    await broker.advance(15 * 60)
    assert len(checks.seen) == 15 and len(broker.half_messages()) == 1
    await broker.advance(60)
    assert len(checks.seen) == 15 and broker.half_messages() == []
    assert [m.body for m in broker.transactions.discarded] == [b"o-1"]
    assert broker.messages("orders") == []


async def test_without_a_producer_of_its_group_a_half_message_is_not_checked(
    broker: MemoryBroker, tx: MemoryTransactionProducer, checks: Checks
) -> None:
    await tx.send_in_transaction(Message("orders", b"o-1"), LocalTx(UNKNOWN))
    await tx.stop()
    assert await broker.check_transactions() == {}
    assert checks.seen == [] and len(broker.half_messages()) == 1


# -- request-reply ------------------------------------------------------------------------------


async def replier(broker: MemoryBroker, topic: str) -> MemoryProducer:
    """A service answering requests on `topic` with the body upper-cased."""
    p = MemoryProducer(broker, "replier")
    await p.start()

    async def handle(batch: list[StoredMessage], ctx: ConsumeContext) -> None:
        for m in batch:
            await p.send(create_reply(m, m.body.upper(), properties={"by": "replier"}))

    await start_consumer(broker, "svc", topic, handle)
    return p


async def test_a_request_gets_the_reply_the_listener_sends(broker: MemoryBroker) -> None:
    await replier(broker, "rpc")
    requester = MemoryProducer(broker, "client")
    await requester.start()
    reply = await requester.request(Message("rpc", b"ping"), timeout_ms=3000)
    assert reply.body == b"PING" and reply.properties["by"] == "replier"
    assert reply.topic == "DefaultCluster_REPLY_TOPIC"
    [request] = broker.messages("rpc")
    assert request.properties[Prop.CORRELATION_ID] == reply.properties[Prop.CORRELATION_ID]
    assert request.properties[Prop.MESSAGE_REPLY_TO_CLIENT] == requester.client_id
    assert request.properties[Prop.MESSAGE_TTL] == "3000"
    assert broker.replies.pending == {}


async def test_a_request_without_a_reply_times_out_on_the_fake_clock(broker: MemoryBroker) -> None:
    requester = MemoryProducer(broker, "client")
    await requester.start()
    pending = asyncio.ensure_future(requester.request(Message("rpc", b"ping"), timeout_ms=60_000))
    await broker.advance(60)
    assert not pending.done()
    await broker.advance(0.001)
    with pytest.raises(RequestTimeoutError, match="60000 ms"):
        await pending


async def test_a_request_also_times_out_in_real_time(broker: MemoryBroker) -> None:
    requester = MemoryProducer(broker, "client")
    await requester.start()
    with pytest.raises(RequestTimeoutError):
        await requester.request(Message("rpc", b"ping"), timeout_ms=20)
    assert broker.replies.pending == {}


async def test_a_reply_to_a_requester_that_is_gone_is_refused(broker: MemoryBroker) -> None:
    p = MemoryProducer(broker, "replier")
    await p.start()
    request = StoredMessage(
        topic="rpc", body=b"x", queue_id=0, flag=0, queue_offset=0, commit_log_offset=0,
        sys_flag=0, born_timestamp=0, born_host=(b"\x7f\0\0\1", 0), store_timestamp=0,
        store_host=(b"\x7f\0\0\1", 0), reconsume_times=0, prepared_transaction_offset=0,
        body_crc=0, store_size=0,
        properties={Prop.CLUSTER: "DefaultCluster", Prop.CORRELATION_ID: "c-1",
                    Prop.MESSAGE_REPLY_TO_CLIENT: "127.0.0.1@gone"},
    )  # fmt: skip
    with pytest.raises(SystemError_, match="not found"):
        await p.send(create_reply(request, b"late"))
