"""One set of listeners, two transports: the in-memory test app (`rocket_test_app`, fake clock)
and a real embedded broker (`rocket_app`). The business outcome must be the same on both, so a
unit test on the in-memory app says something true about production."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from pydantic import BaseModel

from rmqkit.client.push_consumer import PushConsumer
from rmqkit.common.names import dlq_topic
from rmqkit.starter import GiveUp, ListenerRegistry, MessageMeta, RetryLater, rocket_listener
from rmqkit.testing.fixtures import AppFactory
from rmqkit.testing.memory import RocketTestAppFactory
from rmqkit.testing.polling import check_for

pytestmark = pytest.mark.integration


class Payment(BaseModel):
    order_id: str
    amount_cents: int


def listeners(log: dict[str, list[Any]]) -> ListenerRegistry:
    reg = ListenerRegistry()

    @rocket_listener(topic="payments", tag="charge", group="billing", registry=reg,
                     consume_from_where="CONSUME_FROM_FIRST_OFFSET")
    async def charge(p: Payment, meta: MessageMeta) -> None:
        log["charge"].append((p.order_id, meta.reconsume_times))
        if p.amount_cents < 0:
            raise GiveUp("negative")
        if p.order_id == "flaky" and meta.reconsume_times == 0:
            raise RetryLater(delay=1)

    @rocket_listener(topic="payments", tag="refund", group="billing", registry=reg,
                     consume_from_where="CONSUME_FROM_FIRST_OFFSET")
    async def refund(p: Payment) -> None:
        log["refund"].append(p.order_id)

    return reg


async def scenario(send: Callable[..., Awaitable[Any]], settle: Callable[[], Awaitable[None]],
                   log: dict[str, list[Any]]) -> None:  # fmt: skip
    await send("payments:charge", Payment(order_id="ok", amount_cents=5))
    await send("payments:charge", Payment(order_id="flaky", amount_cents=5))
    await send("payments:charge", Payment(order_id="bad", amount_cents=-1))
    await send("payments:refund", Payment(order_id="ok", amount_cents=5))
    await send("payments:charge", {"order_id": "poison"})  # does not validate: DLQ, no call
    await settle()


EXPECTED_CHARGES = [("bad", 0), ("flaky", 0), ("flaky", 1), ("ok", 0)]


async def test_in_memory(rocket_test_app: RocketTestAppFactory) -> None:
    log: dict[str, list[Any]] = {"charge": [], "refund": []}
    async with rocket_test_app(listeners=listeners(log)) as t:

        async def settle() -> None:
            await t.drain()
            await t.advance(5)  # the retry's delay, on the fake clock

        await scenario(t.template.send, settle, log)
        dead = sorted(m.properties["RMQKIT_ERROR"][:8] for m in t.dlq("billing"))
    assert sorted(log["charge"]) == EXPECTED_CHARGES
    assert log["refund"] == ["ok"]
    assert dead == ["negative", "payload "]


async def test_real_broker(rocket_app: AppFactory, rocket_cluster: Any) -> None:
    log: dict[str, list[Any]] = {"charge": [], "refund": []}
    async with rocket_app(listeners=listeners(log)) as app:

        async def settle() -> None:
            await check_for(lambda: sorted(log["charge"]) == EXPECTED_CHARGES, timeout=20)

        await scenario(app.template.send, settle, log)
        dead: list[str] = []
        reader = PushConsumer("dlq-reader", rocket_cluster.name_server,
                              consume_from_where="CONSUME_FROM_FIRST_OFFSET")
        reader.subscribe(dlq_topic("billing"))

        async def read(batch, ctx):  # type: ignore[no-untyped-def]
            dead.extend(m.properties["RMQKIT_ERROR"][:8] for m in batch)

        reader.register(read)
        async with reader:
            await check_for(lambda: len(dead) == 2, timeout=20)
    assert sorted(log["charge"]) == EXPECTED_CHARGES
    assert log["refund"] == ["ok"]
    assert sorted(dead) == ["negative", "payload "]
