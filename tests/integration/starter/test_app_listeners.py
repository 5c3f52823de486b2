"""RocketApp against a real broker (an embedded NameServer + broker on 127.0.0.1, port 0):
typed payloads, metadata, tag routing within a group, fan-out across groups, failure control."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import BaseModel

from rmqkit.client.push_consumer import PushConsumer
from rmqkit.common.names import dlq_topic
from rmqkit.starter import (
    EmbeddedCluster,
    GiveUp,
    ListenerRegistry,
    MessageMeta,
    RetryLater,
    RocketApp,
    RocketSettings,
    rocket_listener,
)
from rmqkit.starter.meta import ERROR_PROPERTY
from rmqkit.testing.polling import check_for

pytestmark = pytest.mark.integration


class OrderPaid(BaseModel):
    order_id: str
    amount_cents: int


@dataclass
class Shipped:
    order_id: str


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[EmbeddedCluster]:
    async with EmbeddedCluster(tmp_path / "data") as c:
        yield c


def settings(cluster: EmbeddedCluster, **kw: object) -> RocketSettings:
    return RocketSettings(name_server=cluster.name_server, **kw)  # type: ignore[arg-type]


async def test_typed_payloads_meta_and_tag_routing(cluster: EmbeddedCluster) -> None:
    reg = ListenerRegistry()
    paid: list[tuple[OrderPaid, MessageMeta]] = []
    shipped: list[Shipped] = []

    @rocket_listener(topic="order", tag="paid", group="svc", registry=reg,
                     consume_from_where="CONSUME_FROM_FIRST_OFFSET")
    async def on_paid(order: OrderPaid, meta: MessageMeta) -> None:
        paid.append((order, meta))

    @rocket_listener(topic="order", tag="shipped", group="svc", registry=reg,
                     consume_from_where="CONSUME_FROM_FIRST_OFFSET")
    def on_shipped(event: Shipped) -> None:  # a plain function runs in a worker thread
        shipped.append(event)

    async with RocketApp(settings(cluster), listeners=reg) as app:
        assert app.groups["svc"].subscriptions() == {"order": ("paid || shipped", "TAG")}
        ready = await app.health.readiness()
        assert ready.ok, ready.to_dict()
        assert {"nameserver", "consumer:svc"} <= set(ready.checks)
        await app.template.send("order:paid", OrderPaid(order_id="o-1", amount_cents=250),
                                keys="o-1", properties={"region": "eu"})
        await app.template.send("order:shipped", Shipped("o-1"))
        await app.template.send("order:cancelled", {"order_id": "o-1"})
        await check_for(lambda: len(paid) == 1 and len(shipped) == 1, timeout=10)
    order, meta = paid[0]
    assert order == OrderPaid(order_id="o-1", amount_cents=250)
    assert meta.tags == "paid" and meta.keys == ("o-1",) and meta.topic == "order"
    assert meta.user_properties == {"region": "eu"} and meta.reconsume_times == 0
    assert shipped == [Shipped("o-1")]


async def test_fan_out_to_groups_and_retry_later(cluster: EmbeddedCluster) -> None:
    reg = ListenerRegistry()
    seen: dict[str, list[int]] = {"a": [], "b": []}

    @rocket_listener(topic="paid", group="notify", registry=reg,
                     consume_from_where="CONSUME_FROM_FIRST_OFFSET")
    async def notify(order: OrderPaid, meta: MessageMeta) -> None:
        seen["a"].append(meta.reconsume_times)
        if meta.reconsume_times == 0:
            raise RetryLater(delay=1)

    @rocket_listener(topic="paid", group="analytics", registry=reg,
                     consume_from_where="CONSUME_FROM_FIRST_OFFSET")
    async def analytics(order: OrderPaid, meta: MessageMeta) -> None:
        seen["b"].append(meta.reconsume_times)

    async with RocketApp(settings(cluster), listeners=reg) as app:
        await app.template.send("paid", OrderPaid(order_id="o-2", amount_cents=1))
        await check_for(lambda: seen["a"] == [0, 1] and seen["b"] == [0], timeout=15)


async def test_poison_payload_and_give_up_go_to_the_dlq_with_the_reason(
    cluster: EmbeddedCluster,
) -> None:
    reg = ListenerRegistry()
    calls: list[str] = []

    @rocket_listener(topic="pay", group="payer", registry=reg,
                     consume_from_where="CONSUME_FROM_FIRST_OFFSET")
    async def pay(order: OrderPaid) -> None:
        calls.append(order.order_id)
        if order.amount_cents < 0:
            raise GiveUp("negative amount")

    dead: list[dict[str, str]] = []
    async with RocketApp(settings(cluster), listeners=reg) as app:
        await app.template.send("pay", {"order_id": "bad"})  # no amount: does not validate
        await app.template.send("pay", OrderPaid(order_id="neg", amount_cents=-5))
        await app.template.send("pay", OrderPaid(order_id="ok", amount_cents=5))
        await check_for(lambda: sorted(calls) == ["neg", "ok"], timeout=10)
        dlq = PushConsumer("dlq-reader", cluster.name_server,
                           consume_from_where="CONSUME_FROM_FIRST_OFFSET")
        dlq.subscribe(dlq_topic("payer"))

        async def read(batch, ctx):  # type: ignore[no-untyped-def]
            dead.extend(m.properties for m in batch)

        dlq.register(read)
        async with dlq:
            await check_for(lambda: len(dead) == 2, timeout=15)
    reasons = sorted(p[ERROR_PROPERTY] for p in dead)
    assert "amount_cents: Field required" in reasons[1] or "amount_cents" in reasons[1]
    assert reasons[0] == "negative amount"
    assert all(p["DLQ_ORIGIN_TOPIC"] == "pay" for p in dead)


async def test_namespaces_isolate_two_apps_on_one_cluster(cluster: EmbeddedCluster) -> None:
    got: dict[str, list[tuple[str, str]]] = {"blue": [], "green": []}

    def registry(ns: str) -> ListenerRegistry:
        reg = ListenerRegistry()

        @rocket_listener(topic="pay", group="payer", registry=reg,
                         consume_from_where="CONSUME_FROM_FIRST_OFFSET")
        async def pay(order: OrderPaid, meta: MessageMeta) -> None:
            got[ns].append((order.order_id, meta.topic))
            if order.amount_cents < 0:
                raise GiveUp("negative")

        return reg

    def ns_settings(ns: str) -> RocketSettings:
        return RocketSettings.model_validate({
            "name_server": cluster.name_server,
            "producer": {"namespace": ns, "group": "shop"},
            "consumer": {"namespace": ns, "instance_name": ns},
        })  # fmt: skip

    async with (
        RocketApp(ns_settings("blue"), listeners=registry("blue")) as blue,
        RocketApp(ns_settings("green"), listeners=registry("green")) as green,
    ):
        await blue.template.send("pay", OrderPaid(order_id="b1", amount_cents=1))
        await blue.template.send("pay", OrderPaid(order_id="b2", amount_cents=-1))
        await green.template.send("pay", OrderPaid(order_id="g1", amount_cents=1))
        await check_for(lambda: len(got["blue"]) == 2 and len(got["green"]) == 1, timeout=15)
        await check_for(
            lambda: _lag_is_zero(blue), timeout=15, message="lag of the namespaced group"
        )
    assert sorted(got["blue"]) == [("b1", "pay"), ("b2", "pay")]  # the user sees plain names
    assert got["green"] == [("g1", "pay")]
    dead: list[str] = []
    reader = PushConsumer("dlq-reader", cluster.name_server,
                          consume_from_where="CONSUME_FROM_FIRST_OFFSET")
    reader.subscribe(dlq_topic("blue%payer"))

    async def read(batch, ctx):  # type: ignore[no-untyped-def]
        dead.extend(m.properties[ERROR_PROPERTY] for m in batch)

    reader.register(read)
    async with reader:
        await check_for(lambda: dead == ["negative"], timeout=15)


async def _lag_is_zero(app: RocketApp) -> bool:
    return (await app.consumer_lag()).get(("payer", "pay")) == 0
