"""A listener group that subscribes unlike its members already running elsewhere (here a raw
PushConsumer of the same group, as another process would be) fails to start, or warns."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from rmqkit.client.admin import AdminClient
from rmqkit.client.push_consumer import ConsumeContext, ConsumeResult, PushConsumer
from rmqkit.errors import ConfigurationError
from rmqkit.protocol.record import StoredMessage
from rmqkit.starter import (
    EmbeddedCluster,
    ListenerRegistry,
    RocketApp,
    RocketSettings,
    rocket_listener,
)
from rmqkit.testing.polling import check_for

pytestmark = pytest.mark.integration


@pytest.fixture
async def running_member(tmp_path: Path) -> AsyncIterator[EmbeddedCluster]:
    """An embedded cluster where group `svc` already runs, subscribed to order:paid."""
    async with EmbeddedCluster(tmp_path / "data") as cluster:
        async with AdminClient(cluster.name_server) as admin:
            await admin.create_topic("order", 4)  # a consumer heart-beats the brokers of its routes
        other = PushConsumer("svc", cluster.name_server, instance_name="elsewhere")
        other.subscribe("order", "paid")

        async def handle(msgs: list[StoredMessage], ctx: ConsumeContext) -> ConsumeResult:
            return ConsumeResult.SUCCESS

        other.register(handle)
        async with other:
            assert cluster.broker is not None
            clients = cluster.broker.clients
            await check_for(lambda: "svc" in clients.consumers, timeout=10)
            yield cluster


def app(cluster: EmbeddedCluster, tag: str, check: str = "fail") -> RocketApp:
    reg = ListenerRegistry()

    @rocket_listener(topic="order", tag=tag, group="svc", registry=reg)
    async def on_order(body: dict[str, str]) -> None: ...

    settings = RocketSettings(
        name_server=cluster.name_server,
        consumer={"instance_name": "here", "subscription_check": check},
    )
    return RocketApp(settings, listeners=reg)


async def test_a_different_subscription_fails_the_start(running_member: EmbeddedCluster) -> None:
    with pytest.raises(ConfigurationError) as err:
        async with app(running_member, "shipped"):
            pass
    text = str(err.value)
    assert "listener group 'svc' subscribes differently" in text
    assert "topic order: here 'shipped', there 'paid'" in text
    assert "@elsewhere@" in text  # the running member's client id


async def test_the_same_subscription_starts(running_member: EmbeddedCluster) -> None:
    async with app(running_member, "paid") as started:
        assert "svc" in started.consumers


async def test_warn_lets_a_rolling_change_start(
    running_member: EmbeddedCluster, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="rmqkit"):
        async with app(running_member, "shipped", check="warn") as started:
            assert "svc" in started.consumers
    assert any("subscribes differently" in r.getMessage() for r in caplog.records)
