"""dependency-injector wiring: `Provide[...]` in listener parameters, per-message resources with
async set-up and tear-down (`Scoped`), listener methods on a container-provided instance, and
the container's resources initialised before consumers start and shut down after they stop."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from dependency_injector import containers, providers
from dependency_injector.wiring import Provide
from pydantic import BaseModel

from rmqkit.starter import ListenerRegistry, Scoped, rocket_listener
from rmqkit.testing.memory import RocketTestAppFactory

EVENTS: list[str] = []


class Order(BaseModel):
    id: str


class Repo:
    def __init__(self) -> None:
        self.saved: list[str] = []


async def session() -> AsyncIterator[dict[str, Any]]:
    EVENTS.append("session open")
    yield {"tx": len(EVENTS)}
    EVENTS.append("session close")


async def pool() -> AsyncIterator[str]:
    EVENTS.append("pool up")
    yield "pool"
    EVENTS.append("pool down")


class Shipping:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.shipped: list[str] = []

    async def on_order(self, order: Order) -> None:
        self.shipped.append(self.prefix + order.id)


class Container(containers.DeclarativeContainer):
    repo = providers.Singleton(Repo)
    session = providers.Factory(session)
    pool = providers.Resource(pool)
    handler = providers.Singleton(Shipping, prefix="ship:")


REG = ListenerRegistry()


@rocket_listener(topic="orders", group="saver", registry=REG)
async def save(
    order: Order,
    repo: Repo = Provide[Container.repo],
    tx: dict[str, Any] = Scoped(Container.session),
) -> None:
    EVENTS.append(f"save {order.id} in tx")
    repo.saved.append(order.id)


SHIP_SPEC = rocket_listener(topic="orders", group="shipper", registry=REG)(Shipping.on_order)


async def test_container_wiring_and_per_message_resources(
    rocket_test_app: RocketTestAppFactory,
) -> None:
    EVENTS.clear()
    container = Container()
    async with rocket_test_app(listeners=REG, container=container) as t:
        assert EVENTS == ["pool up"]  # resources are ready before any message is consumed
        await t.template.send("orders", Order(id="o1"))
        await t.template.send("orders", Order(id="o2"))
        await t.drain()
        assert container.repo().saved == ["o1", "o2"]
        assert container.handler().shipped == ["ship:o1", "ship:o2"]
    # one session per message, even with both messages in flight at once
    assert EVENTS.count("session open") == EVENTS.count("session close") == 2
    assert EVENTS.index("session open") < EVENTS.index("save o1 in tx")
    assert EVENTS[-1] == "pool down"


class Failing(Exception): ...


async def tx_scope() -> AsyncIterator[list[str]]:
    log: list[str] = []
    try:
        yield log
    except Failing:
        EVENTS.append("rollback")
        raise
    else:
        EVENTS.append("commit")


REG2 = ListenerRegistry()


@rocket_listener(topic="pay", group="payer", registry=REG2, drop_on=(Failing,))
async def pay(order: Order, tx: list[str] = Scoped(tx_scope)) -> None:
    if order.id == "bad":
        raise Failing


async def test_scoped_teardown_sees_the_handlers_exception(
    rocket_test_app: RocketTestAppFactory,
) -> None:
    EVENTS.clear()
    async with rocket_test_app(listeners=REG2) as t:
        await t.template.send("pay", Order(id="good"))
        await t.drain()
        await t.template.send("pay", Order(id="bad"))
        await t.drain()
    assert EVENTS == ["commit", "rollback"]
