"""RocketApp's client settings that point somewhere else: TLS (`tls-enable`, `rocketmq.tls.*`)
against a cluster that accepts TLS only; a listener that consumes from a cluster, a namespace
and a client instance of its own (`rocketmq.consumer.listeners.<g>.<t>.*`); RocketMQ's own
message trace in the region's topic with `access-channel=CLOUD`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic import BaseModel

from rmqkit.client import Message, Producer
from rmqkit.client.admin import AdminClient
from rmqkit.errors import ConfigurationError, SystemError_
from rmqkit.remoting.tls import ClientTls, ServerTls, TlsMode
from rmqkit.remoting.tls_config import TlsSettings
from rmqkit.starter import (
    EmbeddedCluster,
    ListenerRegistry,
    RocketApp,
    RocketSettings,
    rocket_listener,
)
from rmqkit.testing.polling import check_for
from tests.certs import TestCA

pytestmark = pytest.mark.integration

FIRST = "CONSUME_FROM_FIRST_OFFSET"


class OrderPaid(BaseModel):
    order_id: str


@pytest.fixture
async def tls_cluster(tmp_path: Path) -> AsyncIterator[tuple[EmbeddedCluster, TestCA]]:
    ca = TestCA(tmp_path / "ca")
    cert = ca.issue("cluster")
    tls = TlsSettings(
        ServerTls(TlsMode.ENFORCING, cert.cert, cert.key),
        ClientTls(verify=True, trust_cert_path=ca.cert),
    )
    async with EmbeddedCluster(tmp_path / "data", tls=tls) as cluster:
        yield cluster, ca


async def test_tls_template_and_listener_against_an_enforcing_cluster(
    tls_cluster: tuple[EmbeddedCluster, TestCA],
) -> None:
    cluster, ca = tls_cluster
    reg = ListenerRegistry()
    paid: list[OrderPaid] = []

    @rocket_listener(topic="order", group="billing", registry=reg, consume_from_where=FIRST)
    async def on_paid(order: OrderPaid) -> None:
        paid.append(order)

    settings = RocketSettings(
        name_server=cluster.name_server, producer={"group": "shop", "tls_enable": True},
        consumer={"tls_enable": True},
        tls={"verify_server": True, "trust_cert_path": str(ca.cert), "check_hostname": True},
    )  # fmt: skip
    async with RocketApp(settings, listeners=reg) as app:
        await app.template.send("order:paid", OrderPaid(order_id="o-1"))
        await check_for(lambda: paid == [OrderPaid(order_id="o-1")], timeout=10)
        lag = await app.consumer_lag("billing")  # the admin reads go over TLS too
        assert set(lag) == {("billing", "order")}
        assert cluster.broker is not None
        assert all(c.transport and c.transport.get_extra_info("cipher")
                   for c in cluster.broker.server.connections)  # fmt: skip


async def test_a_template_without_tls_enable_is_told_why(
    tls_cluster: tuple[EmbeddedCluster, TestCA],
) -> None:
    cluster, _ = tls_cluster
    settings = RocketSettings(
        name_server=cluster.name_server,
        producer={"group": "shop", "retry_times_when_send_failed": 0},
    )
    async with RocketApp(settings, listeners=ListenerRegistry()) as app:
        with pytest.raises(SystemError_, match="accepts TLS connections only"):
            await app.template.send("order:paid", OrderPaid(order_id="o-2"))


async def test_a_listener_consumes_from_its_own_cluster_namespace_and_instance(
    tmp_path: Path,
) -> None:
    reg = ListenerRegistry()
    billed: list[OrderPaid] = []
    audited: list[OrderPaid] = []

    @rocket_listener(topic="order", group="billing", registry=reg, consume_from_where=FIRST)
    async def bill(order: OrderPaid) -> None:
        billed.append(order)

    @rocket_listener(topic="order", group="audit", registry=reg, consume_from_where=FIRST)
    async def audit(order: OrderPaid) -> None:
        audited.append(order)

    async with (
        EmbeddedCluster(tmp_path / "main") as main,
        EmbeddedCluster(tmp_path / "audit", broker_name="broker-audit") as other,
    ):
        own = {"name_server": other.name_server, "namespace": "audit-ns",
               "instance_name": "audit-instance"}  # fmt: skip
        settings = RocketSettings(
            name_server=main.name_server, producer={"group": "shop"},
            consumer={"listeners": {"audit": {"order": own}}},
        )  # fmt: skip
        async with RocketApp(settings, listeners=reg) as app:
            await app.template.send("order:paid", OrderPaid(order_id="main-1"))
            async with Producer("auditors", other.name_server, namespace="audit-ns") as p:
                await p.send(Message("order", b'{"order_id": "audit-1"}', tags="paid"))
            await check_for(lambda: billed and audited, timeout=10)
            assert billed == [OrderPaid(order_id="main-1")]
            assert audited == [OrderPaid(order_id="audit-1")]
            consumer = app.consumers["audit"]
            assert consumer.config.namesrv_addr == other.name_server  # type: ignore[attr-defined]
            assert consumer.config.instance_name == "audit-instance"  # type: ignore[attr-defined]
            lag = await app.consumer_lag("audit")  # asks the audit cluster, in its namespace
            assert set(lag) == {("audit", "order")} and lag[("audit", "order")] in (0, 1)
        # the audit group committed its offset on the audit cluster, under its namespace
        assert other.broker is not None
        committed = [other.broker.offsets.query("audit-ns%audit", "audit-ns%order", q)
                     for q in range(8)]  # fmt: skip
        assert sum(max(0, c) for c in committed) == 1


async def test_listeners_of_one_group_must_connect_alike(tmp_path: Path) -> None:
    reg = ListenerRegistry()

    @rocket_listener(topic="order", group="billing", registry=reg)
    async def bill(order: OrderPaid) -> None: ...

    @rocket_listener(topic="refund", group="billing", registry=reg)
    async def refund(order: OrderPaid) -> None: ...

    async with EmbeddedCluster(tmp_path / "main") as main:
        settings = RocketSettings(
            name_server=main.name_server,
            consumer={"listeners": {"billing": {"refund": {"namespace": "refunds"}}}},
        )
        with pytest.raises(ConfigurationError, match="connect differently") as err:
            async with RocketApp(settings, listeners=reg):
                pass
    assert "namespace: order='', refund='refunds'" in str(err.value)


async def test_rocketmq_message_trace_in_the_regions_topic_with_access_channel_cloud(
    tmp_path: Path,
) -> None:
    reg = ListenerRegistry()
    paid: list[OrderPaid] = []

    @rocket_listener(topic="order", group="billing", registry=reg, consume_from_where=FIRST)
    async def on_paid(order: OrderPaid) -> None:
        paid.append(order)

    region_topic = "rmq_sys_TRACE_DATA_HZ-1"
    async with EmbeddedCluster(tmp_path / "data", region_id="HZ-1") as cluster:
        traced = {"enable_msg_trace": True}
        settings = RocketSettings(
            name_server=cluster.name_server, access_channel="cloud",
            producer={"group": "shop", **traced}, consumer=traced,
        )  # fmt: skip
        async with RocketApp(settings, listeners=reg) as app:
            sent = await app.template.send("order:paid", OrderPaid(order_id="o-7"))
            await check_for(lambda: paid, timeout=10)
            async with AdminClient(cluster.name_server, instance_name="trace-reader") as admin:

                async def both() -> bool:
                    t = await admin.query_trace(sent.msg_id, trace_topic=region_topic)
                    return bool(t.sends) and any(c.success for c in t.consumes)

                await check_for(both, timeout=15)
                trace = await admin.query_trace(sent.msg_id, trace_topic=region_topic)
        assert trace.sends[0].group == "shop" and trace.groups == ["billing"]
