"""A slave copies its master's topics, consumer offsets, delay offsets and groups (SlaveSync)."""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from rmqkit.client.message import Message
from rmqkit.client.producer import Producer
from rmqkit.protocol.codes import RequestCode as RC
from rmqkit.protocol.codes import ResponseCode
from rmqkit.protocol.sync_bodies import decode_consumer_offsets, decode_delay_offsets
from rmqkit.server.broker.broker import Broker
from rmqkit.server.broker.json_file import load_json
from rmqkit.server.ha.sync import SlaveSync
from rmqkit.server.namesrv.namesrv import NameServer, NameServerSettings
from rmqkit.testing import check_for

from .conftest import Cluster, broker_settings

pytestmark = pytest.mark.integration

LEVELS = "100ms 200ms 300ms"


@dataclass
class Pair:
    cluster: Cluster
    slave: Broker
    sync: SlaveSync

    @property
    def master(self) -> Broker:
        return self.cluster.broker


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[Pair]:
    from rmqkit.remoting.client import RemotingClient

    async with NameServer(NameServerSettings(host="127.0.0.1", listen_port=0)) as ns:
        ns_addr = f"127.0.0.1:{ns.port}"
        levels = {"message_delay_level": LEVELS}
        master = Broker(broker_settings(tmp_path / "master", ns_addr, store=levels))
        slave = Broker(broker_settings(
            tmp_path / "slave", ns_addr, broker_role="SLAVE", broker_id=1, store=levels,
        ))  # fmt: skip
        await master.start()
        await slave.start()
        client = RemotingClient()
        sync = SlaveSync(slave, interval_s=0.05)
        try:
            async with sync:
                yield Pair(Cluster(ns, master, client, tmp_path), slave, sync)
        finally:
            await client.close()
            await slave.stop()
            await master.stop()


async def test_the_slave_learns_its_master_from_the_nameserver(pair: Pair) -> None:
    assert pair.slave.master_addr == pair.master.addr
    assert pair.sync.master_addr == pair.master.addr
    await check_for(lambda: pair.sync.rounds >= 1)


async def test_the_master_answers_all_four_codes(pair: Pair) -> None:
    c = pair.cluster
    await c.call(RC.UPDATE_CONSUMER_OFFSET, consumerGroup="G", topic="T", queueId=2,
                 commitOffset=12)  # fmt: skip
    pair.master.schedule.offsets[1] = 5  # as the schedule service leaves it
    r = await c.call(RC.GET_ALL_CONSUMER_OFFSET)
    assert r.code == ResponseCode.SUCCESS
    assert decode_consumer_offsets(r.body)["T@G"] == {2: 12}
    r = await c.call(RC.GET_ALL_DELAY_OFFSET)
    assert r.code == ResponseCode.SUCCESS and decode_delay_offsets(r.body) == {1: 5}
    for code in (RC.GET_ALL_TOPIC_CONFIG, RC.GET_ALL_SUBSCRIPTIONGROUP_CONFIG):
        r = await c.call(code)
        assert r.code == ResponseCode.SUCCESS and r.body


async def test_tables_made_on_the_master_appear_on_the_slave(pair: Pair) -> None:
    c, slave = pair.cluster, pair.slave
    await c.create_topic("Orders", 3)
    group = {"groupName": "Billing", "retryMaxTimes": 4, "brokerId": 1,
             "whichBrokerWhenConsumeSlowly": 2}  # fmt: skip
    r = await c.call(RC.UPDATE_AND_CREATE_SUBSCRIPTIONGROUP, orjson.dumps(group))
    assert r.code == ResponseCode.SUCCESS
    r = await c.call(RC.UPDATE_CONSUMER_OFFSET, consumerGroup="Billing", topic="Orders",
                     queueId=1, commitOffset=7)  # fmt: skip
    assert r.code == ResponseCode.SUCCESS
    async with Producer("PG", c.ns) as p:
        await p.send(Message("Orders", b"later", delay_level=1))
    await check_for(lambda: pair.master.schedule.offsets.get(1) == 1, timeout=5)

    await check_for(lambda: "Orders" in slave.topics.topics, timeout=5)
    assert slave.topics.topics["Orders"].read_queue_nums == 3
    assert slave.topics.data_version == pair.master.topics.data_version
    await check_for(lambda: slave.offsets.query("Billing", "Orders", 1) == 7, timeout=5)
    await check_for(lambda: slave.schedule.offsets.get(1) == 1, timeout=5)
    billing = await check_for(lambda: slave.groups.groups.get("Billing"), timeout=5)
    assert (billing.retry_max_times, billing.broker_id, billing.which_broker_when_consume_slowly) \
        == (4, 1, 2)  # fmt: skip

    # Persisted at once: a slave that restarts or takes over starts from them.
    config = c.root / "slave" / "config"
    assert "Orders" in (load_json(config / "topics.json") or {})["topicConfigTable"]
    assert (load_json(config / "consumerOffset.json") or {})["offsetTable"]["Orders@Billing"] \
        == {"1": 7}  # fmt: skip
    assert (load_json(config / "delayOffset.json") or {})["offsetTable"] == {"1": 1}
    assert "Billing" in (load_json(config / "subscriptionGroup.json") or {})[
        "subscriptionGroupTable"]  # fmt: skip


async def test_a_topic_change_makes_the_slave_register_again(pair: Pair) -> None:
    c, slave = pair.cluster, pair.slave
    await check_for(lambda: pair.sync.rounds >= 1)
    before = slave.registration.registered.get(c.ns, 0)
    await c.create_topic("Fresh", 1)
    await check_for(lambda: slave.registration.registered.get(c.ns, 0) > before, timeout=5)
    assert "Fresh" in slave.topics.topics
    r = await c.call(RC.DELETE_TOPIC_IN_BROKER, topic="Fresh")
    assert r.code == ResponseCode.SUCCESS
    await check_for(lambda: "Fresh" not in slave.topics.topics, timeout=5)


async def test_offsets_committed_only_on_the_slave_are_kept(pair: Pair) -> None:
    c, slave = pair.cluster, pair.slave
    r = await c.call(RC.UPDATE_CONSUMER_OFFSET, addr=slave.addr, consumerGroup="G", topic="X",
                     queueId=0, commitOffset=3)  # fmt: skip
    assert r.code == ResponseCode.SUCCESS  # a slave takes commits (its master may be down)
    await c.call(RC.UPDATE_CONSUMER_OFFSET, consumerGroup="G", topic="Y", queueId=0,
                 commitOffset=8)  # fmt: skip
    await check_for(lambda: slave.offsets.query("G", "Y", 0) == 8, timeout=5)
    assert slave.offsets.query("G", "X", 0) == 3


async def test_sync_soon_runs_a_round_at_once(pair: Pair) -> None:
    slow = SlaveSync(pair.slave, interval_s=3600)
    async with slow:
        await check_for(lambda: slow.rounds == 1)  # the first round runs at start
        await pair.cluster.create_topic("Soon", 1)
        slow.sync_soon()
        await check_for(lambda: slow.rounds == 2)
        assert "Soon" in pair.slave.topics.topics


async def test_a_master_that_cannot_be_reached_is_logged_once_per_outage(
    pair: Pair, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="rmqkit.ha.sync")
    # A slave without a NameServer: no registration answer moves its master_addr back.
    alone = Broker(broker_settings(tmp_path / "alone", None, broker_role="SLAVE", broker_id=2))
    await alone.start()
    await alone.slave_sync.stop()  # its own 10 s loop would log the outage too
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{s.getsockname()[1]}"
    alone.master_addr = dead
    sync = SlaveSync(alone, interval_s=0.02)

    def attempts() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.getMessage().startswith("cannot reach master")]

    try:
        async with sync:
            await check_for(lambda: len(attempts()) >= 3, timeout=5)
            assert [r.levelno for r in attempts()].count(logging.WARNING) == 1
            alone.master_addr = pair.master.addr
            await check_for(lambda: sync.rounds >= 1, timeout=5)
            back = [r for r in caplog.records if "copied from master" in r.getMessage()]
            assert [r.levelno for r in back] == [logging.WARNING]
            caplog.clear()
            alone.master_addr = dead  # a second outage is reported again, once
            await check_for(lambda: len(attempts()) >= 2, timeout=5)
            assert [r.levelno for r in attempts()][:2] == [logging.WARNING, logging.DEBUG]
    finally:
        await alone.stop()


async def test_a_master_does_not_sync(pair: Pair) -> None:
    on_master = SlaveSync(pair.master, interval_s=0.01)
    pair.master.master_addr = pair.slave.addr  # as if it were told; it must not copy a slave
    async with on_master:
        await check_for(lambda: pair.sync.rounds >= 2)
    assert on_master.rounds == 0
