"""A broker with aclEnable=true against signed rmqkit clients: what passes, what is refused and why.

The accounts live in plain_acl.yml beside where a broker.properties file would be (`config_dir`),
exactly as `rmqkit serve --config` finds them.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from rmqkit.client.admin import AdminClient
from rmqkit.client.message import Message, SendStatus
from rmqkit.client.producer import Producer
from rmqkit.client.push_consumer import ConsumeContext, ConsumeResult, PushConsumer
from rmqkit.errors import ConfigurationError, SystemError_
from rmqkit.protocol.acl import SessionCredentials
from rmqkit.protocol.record import StoredMessage
from rmqkit.server.broker.broker import Broker
from rmqkit.server.namesrv.namesrv import NameServer, NameServerSettings
from rmqkit.testing import check_for

from .conftest import broker_settings

pytestmark = pytest.mark.integration

ADMIN = SessionCredentials("adminKey01", "adminSecret01")
APP = SessionCredentials("orderApp01", "orderSecret01")
ACCOUNTS = """\
accounts:
  - accessKey: adminKey01
    secretKey: adminSecret01
    admin: true
  - accessKey: orderApp01
    secretKey: orderSecret01
    defaultTopicPerm: DENY
    defaultGroupPerm: DENY
    topicPerms:
      - orders=PUB|SUB
      - audit=SUB
      - secret=DENY
    groupPerms:
      - order-consumers=SUB
"""


@dataclass
class AclCluster:
    namesrv: NameServer
    broker: Broker
    conf: Path

    @property
    def ns(self) -> str:
        return f"127.0.0.1:{self.namesrv.port}"

    def rewrite(self, text: str) -> None:
        """Replace plain_acl.yml, with a later modification time than the file it replaces."""
        path = self.conf / "plain_acl.yml"
        before = path.stat().st_mtime_ns
        path.write_text(text)
        later = max(path.stat().st_mtime_ns, before + 1_000_000_000)
        os.utime(path, ns=(later, later))


@pytest.fixture
async def acl(tmp_path: Path) -> AsyncIterator[AclCluster]:
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "plain_acl.yml").write_text(ACCOUNTS)
    async with NameServer(NameServerSettings(host="127.0.0.1", listen_port=0)) as ns:
        settings = broker_settings(
            tmp_path / "store", f"127.0.0.1:{ns.port}", acl_enable=True, config_dir=conf
        )
        broker = Broker(settings)
        await broker.start()
        try:
            async with AdminClient(f"127.0.0.1:{ns.port}", credentials=ADMIN) as admin:
                for topic in ("orders", "audit", "secret", "other"):
                    await admin.create_topic(topic, 2)
            yield AclCluster(ns, broker, conf)
        finally:
            await broker.stop()


async def send(c: AclCluster, topic: str, credentials: SessionCredentials | None) -> SendStatus:
    async with Producer(
        "order-producers", c.ns, credentials=credentials, retry_times_when_send_failed=0,
        instance_name=f"p-{topic}-{credentials and credentials.access_key}",
    ) as p:  # fmt: skip
        return (await p.send(Message(topic, b"payload"))).status


async def test_signed_clients_produce_and_consume_what_their_account_allows(
    acl: AclCluster,
) -> None:
    for _ in range(6):
        assert await send(acl, "orders", APP) is SendStatus.SEND_OK
    got: list[StoredMessage] = []
    pc = PushConsumer(
        "order-consumers", acl.ns, credentials=APP, instance_name="c-app",
        consume_from_where="CONSUME_FROM_FIRST_OFFSET", rebalance_interval_ms=500,
        persist_interval_ms=200,
    )  # fmt: skip
    pc.subscribe("orders")

    async def handle(msgs: list[StoredMessage], ctx: ConsumeContext) -> ConsumeResult:
        got.extend(msgs)
        return ConsumeResult.SUCCESS

    pc.register(handle)
    async with pc:
        await check_for(lambda: len(got) == 6, timeout=10)
        # offsets are committed too: UPDATE_CONSUMER_OFFSET passes the group and topic checks
        await check_for(
            lambda: (
                sum(acl.broker.offsets.query("order-consumers", "orders", q) for q in (0, 1)) == 6
            ),
            timeout=10,
        )
    assert acl.broker.acl is not None and acl.broker.acl.refused == 0


@pytest.mark.parametrize(
    ("topic", "credentials", "reason"),
    [
        ("orders", None, "No accessKey is configured"),
        ("orders", SessionCredentials("nobody01", "whatever01"), "No acl config for nobody01"),
        (
            "orders",
            SessionCredentials("orderApp01", "wrongSecret"),
            "Check signature failed for accessKey=orderApp01",
        ),
        ("secret", APP, "No permission for topic:secret"),
        ("audit", APP, "No permission for topic:audit"),
        ("other", APP, "No default permission for topic:other"),
    ],
)
async def test_a_refused_send_names_the_reason(
    acl: AclCluster, topic: str, credentials: SessionCredentials | None, reason: str
) -> None:
    with pytest.raises(SystemError_, match="AclException: " + reason):
        await send(acl, topic, credentials)
    assert acl.broker.acl is not None and acl.broker.acl.refused >= 1
    assert (
        acl.broker.store.get_max_offset(topic, 0) + acl.broker.store.get_max_offset(topic, 1) == 0
    )


async def test_only_admin_accounts_create_topics(acl: AclCluster) -> None:
    async with AdminClient(acl.ns, credentials=APP, instance_name="app-admin") as app:
        with pytest.raises(
            SystemError_, match="Need admin permission for request code=17, but accessKey="
            "orderApp01 is not",
        ):  # fmt: skip
            await app.create_topic("made-by-app", 1)
    assert "made-by-app" not in acl.broker.topics.topics


async def test_white_lists_let_clients_through_without_a_signature(acl: AclCluster) -> None:
    with pytest.raises(SystemError_):
        await send(acl, "other", None)
    acl.rewrite("globalWhiteRemoteAddresses:\n  - 127.0.0.*\n" + ACCOUNTS)
    assert acl.broker.acl is not None and acl.broker.acl.files.reload_if_changed()
    assert await send(acl, "other", None) is SendStatus.SEND_OK

    # an account's own white list: its key is enough from there, the secret is not checked
    acl.rewrite(ACCOUNTS.replace("    admin: true\n", "    admin: true\n    whiteRemoteAddress:"
                                 " 127.0.0.1\n", 1))  # fmt: skip
    assert acl.broker.acl.files.reload_if_changed()
    wrong = SessionCredentials("adminKey01", "not-the-secret")
    assert await send(acl, "other", wrong) is SendStatus.SEND_OK
    with pytest.raises(SystemError_, match="Check signature failed"):
        await send(acl, "other", SessionCredentials("orderApp01", "not-the-secret"))


async def test_a_changed_file_is_reread_and_a_broken_one_keeps_the_old_accounts(
    acl: AclCluster,
) -> None:
    with pytest.raises(SystemError_, match="No default permission for topic:other"):
        await send(acl, "other", APP)
    acl.rewrite(
        ACCOUNTS.replace("      - secret=DENY\n", "      - secret=DENY\n      - other=PUB\n", 1)
    )
    validator = acl.broker.acl
    assert validator is not None
    assert validator.files.reload_if_changed()
    assert await send(acl, "other", APP) is SendStatus.SEND_OK

    acl.rewrite("accounts: [this is not: valid yaml\n")
    assert not validator.files.reload_if_changed()
    assert await send(acl, "other", APP) is SendStatus.SEND_OK  # the previous accounts stay


async def test_start_up_stops_on_a_missing_or_bad_acl_file(tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    conf.mkdir()
    settings = broker_settings(tmp_path / "store", None, acl_enable=True, config_dir=conf)
    with pytest.raises(
        ConfigurationError, match=r"aclEnable=true but there is no .*plain_acl\.yml"
    ):
        await Broker(settings).start()
    (conf / "plain_acl.yml").write_text("accounts:\n  - accessKey: short\n    secretKey: x\n")
    with pytest.raises(ConfigurationError, match="longer than 6 characters"):
        await Broker(settings).start()
