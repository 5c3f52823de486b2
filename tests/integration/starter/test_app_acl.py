"""RocketApp against a broker with aclEnable=true: the `access-key` / `secret-key` settings sign
the template's sends and the listeners' consumers (a listener's own keys win for its group);
without them the broker refuses the send."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic import BaseModel

from rmqkit.errors import ConfigurationError, SystemError_
from rmqkit.starter import (
    EmbeddedCluster,
    ListenerRegistry,
    RocketApp,
    RocketSettings,
    rocket_listener,
)
from rmqkit.testing.polling import check_for

pytestmark = pytest.mark.integration

ACCOUNTS = """\
accounts:
  - accessKey: shopApp01
    secretKey: shopSecret01
    topicPerms: [order=PUB|SUB]
    groupPerms: [billing=SUB]
  - accessKey: auditApp01
    secretKey: auditSecret01
    defaultTopicPerm: DENY
    defaultGroupPerm: DENY
    topicPerms: [order=SUB]
    groupPerms: [audit=SUB]
"""
KEYS = {"access_key": "shopApp01", "secret_key": "shopSecret01"}


class OrderPaid(BaseModel):
    order_id: str


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[EmbeddedCluster]:
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "plain_acl.yml").write_text(ACCOUNTS)
    async with EmbeddedCluster(tmp_path / "data", acl_enable=True, config_dir=conf) as c:
        yield c


async def test_signed_template_and_listener(cluster: EmbeddedCluster) -> None:
    reg = ListenerRegistry()
    paid: list[OrderPaid] = []

    @rocket_listener(topic="order", tag="paid", group="billing", registry=reg,
                     consume_from_where="CONSUME_FROM_FIRST_OFFSET")  # fmt: skip
    async def on_paid(order: OrderPaid) -> None:
        paid.append(order)

    settings = RocketSettings(
        name_server=cluster.name_server, producer={"group": "shop", **KEYS}, consumer=KEYS
    )
    async with RocketApp(settings, listeners=reg) as app:
        # the first send creates the topic (through TBW102): PUB on it is all that takes
        await app.template.send("order:paid", OrderPaid(order_id="o-1"))
        await check_for(lambda: paid == [OrderPaid(order_id="o-1")], timeout=10)
    assert cluster.broker is not None and cluster.broker.acl is not None
    assert cluster.broker.acl.refused == 0


async def test_an_unsigned_template_is_refused(cluster: EmbeddedCluster) -> None:
    settings = RocketSettings(
        name_server=cluster.name_server,
        producer={"group": "shop", "retry_times_when_send_failed": 0},
    )
    async with RocketApp(settings, listeners=ListenerRegistry()) as app:
        with pytest.raises(SystemError_, match="No accessKey is configured"):
            await app.template.send("order:paid", OrderPaid(order_id="o-2"))


async def test_a_listener_group_signs_with_its_own_keys(cluster: EmbeddedCluster) -> None:
    # The audit account may read `order` in group `audit` only; the shop account may not use
    # group `audit` at all. So the audit group's consumer must sign with the audit keys.
    reg = ListenerRegistry()
    billed: list[OrderPaid] = []
    audited: list[OrderPaid] = []

    @rocket_listener(topic="order", group="billing", registry=reg,
                     consume_from_where="CONSUME_FROM_FIRST_OFFSET")  # fmt: skip
    async def bill(order: OrderPaid) -> None:
        billed.append(order)

    @rocket_listener(topic="order", group="audit", registry=reg,
                     consume_from_where="CONSUME_FROM_FIRST_OFFSET")  # fmt: skip
    async def audit(order: OrderPaid) -> None:
        audited.append(order)

    audit_keys = {"access_key": "auditApp01", "secret_key": "auditSecret01"}
    settings = RocketSettings(
        name_server=cluster.name_server,
        producer={"group": "shop", **KEYS},
        consumer={**KEYS, "listeners": {"audit": {"order": audit_keys}}},
    )
    async with RocketApp(settings, listeners=reg) as app:
        await app.template.send("order:paid", OrderPaid(order_id="o-3"))
        await check_for(lambda: billed == audited == [OrderPaid(order_id="o-3")], timeout=10)
        # Lag (and the subscription check) ask the brokers with the group's keys; the
        # committed offset reaches them every few seconds, so the lag may still count it.
        lag = await app.consumer_lag("audit")
        assert set(lag) == {("audit", "order")} and lag[("audit", "order")] in (0, 1)
    assert cluster.broker is not None and cluster.broker.acl is not None
    assert cluster.broker.acl.refused == 0


async def test_listeners_of_one_group_must_sign_alike(cluster: EmbeddedCluster) -> None:
    reg = ListenerRegistry()

    @rocket_listener(topic="order", group="billing", registry=reg)
    async def bill(order: OrderPaid) -> None: ...

    @rocket_listener(topic="refund", group="billing", registry=reg)
    async def refund(order: OrderPaid) -> None: ...

    settings = RocketSettings(
        name_server=cluster.name_server,
        consumer={"listeners": {"billing": {"order": KEYS}}},
    )
    with pytest.raises(
        ConfigurationError, match="group 'billing' sign with different ACL keys"
    ) as err:
        async with RocketApp(settings, listeners=reg):
            pass
    assert "order: shopApp01, refund: unsigned" in str(err.value)
    assert "shopSecret01" not in str(err.value)
