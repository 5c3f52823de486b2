"""UPDATE_BROKER_CONFIG (`rmqkit admin updateBrokerConfig`, mqadmin's): keys applied at once or
at the next start, kept in the broker's properties file, refused with a reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from rmqkit.client.admin import AdminClient
from rmqkit.client.message import Message
from rmqkit.client.producer import Producer
from rmqkit.common.java_properties import parse_properties
from rmqkit.errors import BrokerResponseError, RmqkitError
from rmqkit.protocol.codes import RequestCode, ResponseCode
from rmqkit.server.properties import load_broker_settings

from .conftest import Cluster, running_cluster
from .test_cli_admin import admin_ok

pytestmark = pytest.mark.integration

PROPERTIES = """\
# broker-a
brokerClusterName=DefaultCluster
brokerPermission=6
fileReservedTime=72
"""


async def _route_perm(c: Cluster, topic: str) -> int:
    async with AdminClient(c.ns) as a:
        return (await a.route(topic)).queue_datas[0].perm


async def _send(c: Cluster, topic: str) -> None:
    p = Producer("config-test", c.ns, instance_name="config-test", retry_times_when_send_failed=0)
    await p.start()
    try:
        await p.send(Message(topic, b"hello"))
    finally:
        await p.stop()


async def test_a_read_only_broker_refuses_sends_and_the_nameservers_know_at_once(
    tmp_path: Path,
) -> None:
    config = tmp_path / "broker-a.properties"
    config.write_text(PROPERTIES)
    async with running_cluster(tmp_path, config_file=config) as c:
        await c.create_topic("Orders")
        await _send(c, "Orders")
        version = (await c.call(RequestCode.GET_BROKER_CONFIG)).ext_fields["version"]

        out = await admin_ok(c, "updateBrokerConfig", "-b", c.br, "-k", "brokerPermission",
                             "-v", "4")  # fmt: skip
        assert f"update broker config success, {c.br}: applied now: brokerPermission" in out
        assert f"written to {config}" in out
        assert await _route_perm(c, "Orders") == 4  # registered before the answer
        with pytest.raises(RmqkitError, match="has no writable queue"):
            await _send(c, "Orders")
        got = await c.call(RequestCode.GET_BROKER_CONFIG)
        assert parse_properties(got.body.decode())["brokerPermission"] == "4"
        assert got.ext_fields["version"] != version
        assert config.read_text() == PROPERTIES.replace("brokerPermission=6", "brokerPermission=4")

        await admin_ok(c, "updateBrokerConfig", "-c", "DefaultCluster", "-k", "brokerPermission",
                       "-v", "6")  # fmt: skip
        assert await _route_perm(c, "Orders") == 6
        await _send(c, "Orders")
    assert load_broker_settings(config).broker_permission == 6  # the next start's


async def test_a_key_a_start_applies_is_kept_for_the_next_start(tmp_path: Path) -> None:
    config = tmp_path / "broker-a.properties"
    config.write_text(PROPERTIES)
    async with running_cluster(tmp_path, config_file=config) as c:
        async with AdminClient(c.ns) as a:
            remark = await a.update_broker_config(
                c.br, {"fileReservedTime": "48", "autoCreateTopicEnable": "false"}
            )
        assert remark == (
            f"applied now: autoCreateTopicEnable; applied at the next start: fileReservedTime; "
            f"written to {config}"
        )
        assert c.broker.settings.store.file_reserved_time_hours == 72  # what runs
        assert not c.broker.settings.auto_create_topic_enable and not c.broker.topics.auto_create
        with pytest.raises(RmqkitError, match=r"autoCreateTopicEnable is false"):
            await _send(c, "NoSuchTopicYet")  # no longer created on its first send
    kept = load_broker_settings(config)
    assert kept.store.file_reserved_time_hours == 48 and not kept.auto_create_topic_enable
    assert config.read_text().startswith(
        PROPERTIES.replace("fileReservedTime=72", "fileReservedTime=48")
    )


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ("brokerPermision=4\n", "unknown broker.properties key: brokerPermision"),
        ("enableDLegerCommitLog=true\n", "known to RocketMQ, not applied by rmqkit yet"),
        ("brokerPermission=9\n", "brokerPermission='9': Input should be less than or equal to 7"),
        ("defaultTopicQueueNums=many\n", "defaultTopicQueueNums='many'"),
        ("brokerPermission=4\nfileReservedTime=-1\n", "fileReservedTime='-1'"),
    ],
)
async def test_a_bad_key_or_value_changes_nothing(tmp_path: Path, body: str, why: str) -> None:
    config = tmp_path / "broker-a.properties"
    config.write_text(PROPERTIES)
    async with running_cluster(tmp_path, config_file=config) as c:
        r = await c.call(RequestCode.UPDATE_BROKER_CONFIG, body.encode())
        assert r.code == ResponseCode.SYSTEM_ERROR and why in (r.remark or ""), r.remark
        assert c.broker.settings.broker_permission == 6
    assert config.read_text() == PROPERTIES


async def test_without_a_properties_file_only_live_keys_are_taken(cluster: Cluster) -> None:
    async with AdminClient(cluster.ns) as a:
        remark = await a.update_broker_config(cluster.br, {"defaultTopicQueueNums": "2"})
        assert remark == (
            "applied now: defaultTopicQueueNums; not kept: the broker has no properties file "
            "(started without --config)"
        )
        assert cluster.broker.topics.default_queue_nums == 2
        with pytest.raises(BrokerResponseError, match="fileReservedTime: applied only at start"):
            await a.update_broker_config(cluster.br, {"fileReservedTime": "48"})
    empty = await cluster.call(RequestCode.UPDATE_BROKER_CONFIG, b"# nothing\n")
    assert empty.code == ResponseCode.SUCCESS and empty.remark == "nothing to update"
