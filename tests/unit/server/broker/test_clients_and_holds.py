"""Client groups (join, leave, expire, notices) and held pulls (wake, filter, timeout)."""

from __future__ import annotations

import asyncio
from typing import Any

from rmqkit.protocol.heartbeat import ConsumerEntry, SubscriptionEntry
from rmqkit.server.broker.clients import ClientChannel, ClientRegistry, ConsumerGroupInfo
from rmqkit.server.broker.long_polling import PullHoldService
from rmqkit.server.store.dispatch import DispatchRequest


class FakeConn:
    """Stands in for a socket connection: the registry only keys by it and may close it."""

    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True


def chan(cid: str, conn: Any) -> ClientChannel:
    return ClientChannel(cid, conn, "JAVA", 0)


def test_join_leave_and_expiry_notify_the_group() -> None:
    notices: list[list[str]] = []
    reg = ClientRegistry(lambda info: notices.append(info.client_ids()))
    a, b = FakeConn(), FakeConn()
    entry = ConsumerEntry("G", subscriptions=[SubscriptionEntry("T", "x || y")])
    reg.register_consumer(entry, chan("a", a))
    reg.register_consumer(entry, chan("b", b))
    assert notices == [["a"], ["a", "b"]]
    reg.register_consumer(entry, chan("b", b))  # a plain heartbeat changes nothing
    assert len(notices) == 2
    sub = reg.consumers["G"].subscriptions["T"]
    assert sub.tags == frozenset({"x", "y"}) and sub.codes is not None
    reg.connection_closed(b)  # type: ignore[arg-type]
    assert notices[-1] == ["a"]
    reg.consumers["G"].clients[a].last_update -= 1000  # type: ignore[index]
    assert reg.expire(500) == 1 and a.closed
    assert "G" not in reg.consumers


def test_subscription_change_is_announced() -> None:
    seen: list[ConsumerGroupInfo] = []
    reg = ClientRegistry(seen.append)
    conn = FakeConn()
    reg.register_consumer(
        ConsumerEntry("G", subscriptions=[SubscriptionEntry("T", "a")]), chan("c", conn)
    )
    reg.register_consumer(
        ConsumerEntry("G", subscriptions=[SubscriptionEntry("T", "b")]), chan("c", conn)
    )
    assert len(seen) == 2 and seen[-1].subscriptions["T"].tags == frozenset({"b"})


def _req(offset: int, code: int = 0) -> DispatchRequest:
    return DispatchRequest("T", 0, 0, 100, code, 0, offset, "", "", 0, 0, "")


async def test_holds_wake_on_matching_arrival_and_time_out() -> None:
    svc = PullHoldService()
    wanted = svc.hold("T", 0, 5, frozenset({7}), 5.0)
    other_tag = svc.hold("T", 0, 5, frozenset({8}), 0.05)
    svc.notify([_req(4, 7)])  # before the held offset: nothing
    assert not wanted.done()
    svc.notify([_req(5, 7)])
    assert wanted.result() is True
    assert await asyncio.wait_for(other_tag, 2) is False  # timed out
    assert svc.count == 0
    held = svc.hold("T", 0, 0, None, 5.0)
    svc.wake_all()
    assert held.result() is False
