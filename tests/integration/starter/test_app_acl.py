"""RocketApp against a broker with aclEnable=true: the `access-key` / `secret-key` settings sign
the template's sends and the listeners' consumers; without them the broker refuses the send."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic import BaseModel

from rmqkit.errors import SystemError_
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
