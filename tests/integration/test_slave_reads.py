"""What a slave serves and what it refuses: pulls (and where they are sent next), offset
commits, and the writes that belong to its master."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from rmqkit.common.names import SCHEDULE_TOPIC
from rmqkit.common.properties import Prop, encode_properties
from rmqkit.protocol.codes import PULL_COMMIT_OFFSET, PULL_SUBSCRIPTION, PULL_SUSPEND, ResponseCode
from rmqkit.protocol.codes import RequestCode as RC
from rmqkit.protocol.command import RemotingCommand
from rmqkit.remoting.client import RemotingClient
from rmqkit.server.broker.broker import Broker
from rmqkit.server.ha.sync import SlaveSync
from rmqkit.server.namesrv.namesrv import NameServer, NameServerSettings
from rmqkit.server.store import MessageToStore, PutStatus
from rmqkit.testing import check_for

from .conftest import broker_settings

pytestmark = pytest.mark.integration

TOPIC = "Reads"
# Ratio 0: any CommitLog byte past a pull counts as "not in memory", so every pull but the one
# that reads the last record is far behind, and slaveReadEnable sends it to broker 1.
STORE = {"access_message_in_memory_max_ratio": 0, "message_delay_level": "100ms 200ms"}


@dataclass
class Pair:
    ns: str
    master: Broker
    slave: Broker
    client: RemotingClient

    async def call(
        self, broker: Broker, code: int, body: bytes = b"", **ext: Any
    ) -> RemotingCommand:
        cmd = RemotingCommand(code, ext_fields={k: str(v) for k, v in ext.items()}, body=body)
        return await self.client.invoke(broker.addr, cmd, 5.0)

    async def pull(
        self, broker: Broker, offset: int, *, flags: int = 0, commit: int = -1
    ) -> tuple[int, int, int]:
        """(code, nextBeginOffset, suggestWhichBrokerId) of a one-message pull of queue 0."""
        r = await self.call(
            broker, RC.PULL_MESSAGE, consumerGroup="G", topic=TOPIC, queueId=0,
            queueOffset=offset, maxMsgNums=1, sysFlag=PULL_SUBSCRIPTION | flags,
            commitOffset=commit, suspendTimeoutMillis=20_000, subscription="*",
            expressionType="TAG", subVersion=0,
        )  # fmt: skip
        e = r.ext_fields
        return r.code, int(e["nextBeginOffset"]), int(e["suggestWhichBrokerId"])


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[Pair]:
    async with NameServer(NameServerSettings(host="127.0.0.1", listen_port=0)) as ns:
        ns_addr = f"127.0.0.1:{ns.port}"
        master = Broker(broker_settings(
            tmp_path / "master", ns_addr, slave_read_enable=True, store=dict(STORE),
        ))  # fmt: skip
        slave = Broker(broker_settings(
            tmp_path / "slave", ns_addr, broker_role="SLAVE", broker_id=1,
            slave_read_enable=True, store=dict(STORE),
        ))  # fmt: skip
        await master.start()
        await slave.start()
        client = RemotingClient()
        sync = SlaveSync(slave, interval_s=0.05)
        try:
            async with sync:
                p = Pair(ns_addr, master, slave, client)
                r = await p.call(master, RC.UPDATE_AND_CREATE_TOPIC, topic=TOPIC, readQueueNums=1,
                                 writeQueueNums=1, perm=6)  # fmt: skip
                assert r.code == ResponseCode.SUCCESS
                for i in range(3):
                    put = await master.store.put_message(MessageToStore(TOPIC, 0, b"m%d" % i))
                    assert put.status is PutStatus.OK
                # Replicated, the topic copied, and the link up: a slave with a live master.
                await check_for(lambda: slave.store.get_max_offset(TOPIC, 0) == 3, timeout=5)
                await check_for(lambda: TOPIC in slave.topics.topics, timeout=5)
                await check_for(lambda: slave.master_alive, timeout=5)
                yield p
        finally:
            await client.close()
            await slave.stop()
            await master.stop()


# -- pulls ----------------------------------------------------------------------------------


async def test_master_suggests_the_slave_for_a_pull_far_behind(pair: Pair) -> None:
    m = pair.master
    assert await pair.pull(m, 0) == (ResponseCode.SUCCESS, 1, 1)  # whichBrokerWhenConsumeSlowly
    assert await pair.pull(m, 2) == (ResponseCode.SUCCESS, 3, 0)  # reads the last one: brokerId


async def test_slave_with_a_live_master_sends_pulls_back_to_it(pair: Pair) -> None:
    s = pair.slave
    assert await pair.pull(s, 0) == (ResponseCode.SUCCESS, 1, 1)  # far behind: stays here
    assert await pair.pull(s, 2) == (ResponseCode.SUCCESS, 3, 0)  # keeps up: go to the master
    # Caught up: not held here (even though it may be suspended) but sent to the master at once.
    assert await pair.pull(s, 3, flags=PULL_SUSPEND) == (ResponseCode.PULL_RETRY_IMMEDIATELY, 3, 0)
    # An offset past the slave's end is left alone: the master decides.
    assert await pair.pull(s, 7) == (ResponseCode.PULL_RETRY_IMMEDIATELY, 7, 0)


async def test_slave_serves_pulls_itself_once_its_master_is_gone(pair: Pair) -> None:
    s = pair.slave
    await pair.master.stop()
    await check_for(lambda: not s.master_alive, timeout=5)
    assert await pair.pull(s, 2) == (ResponseCode.SUCCESS, 3, 0)
    assert await pair.pull(s, 3) == (ResponseCode.PULL_NOT_FOUND, 3, 0)
    # Never PULL_OFFSET_MOVED from a slave: retry at the same offset.
    assert await pair.pull(s, 7) == (ResponseCode.PULL_RETRY_IMMEDIATELY, 7, 0)


async def test_a_pull_commits_its_offset_on_the_master_only(pair: Pair) -> None:
    await pair.pull(pair.slave, 2, flags=PULL_COMMIT_OFFSET, commit=2)
    assert pair.slave.offsets.query("G", TOPIC, 0) == -1
    await pair.pull(pair.master, 2, flags=PULL_COMMIT_OFFSET, commit=2)
    assert pair.master.offsets.query("G", TOPIC, 0) == 2


async def test_slave_takes_consumer_offset_commits(pair: Pair) -> None:
    s = pair.slave
    r = await pair.call(s, RC.UPDATE_CONSUMER_OFFSET, consumerGroup="G", topic=TOPIC, queueId=0,
                        commitOffset=2)  # fmt: skip
    assert r.code == ResponseCode.SUCCESS
    r = await pair.call(s, RC.QUERY_CONSUMER_OFFSET, consumerGroup="G", topic=TOPIC, queueId=0)
    assert (r.code, r.ext_fields["offset"]) == (ResponseCode.SUCCESS, "2")


# -- refusals -------------------------------------------------------------------------------


def names_broker_and_master(remark: str | None, pair: Pair) -> bool:
    s = pair.slave.settings
    return remark is not None and all(
        part in remark for part in (s.broker_name, pair.slave.addr, "slave", pair.master.addr)
    )


async def test_slave_refuses_messages_sent_back(pair: Pair) -> None:
    r = await pair.call(pair.slave, RC.CONSUMER_SEND_MSG_BACK, group="G", offset=0, delayLevel=0,
                        originMsgId="X", originTopic=TOPIC)  # fmt: skip
    assert r.code == ResponseCode.SERVICE_NOT_AVAILABLE
    assert names_broker_and_master(r.remark, pair), r.remark
    assert "%RETRY%G" not in pair.slave.topics.topics


async def test_slave_refuses_to_end_transactions(pair: Pair) -> None:
    r = await pair.call(pair.slave, RC.END_TRANSACTION, producerGroup="PG",
                        tranStateTableOffset=0, commitLogOffset=0, commitOrRollback=8)  # fmt: skip
    assert r.code == ResponseCode.SLAVE_NOT_AVAILABLE  # RocketMQ's EndTransactionProcessor
    assert names_broker_and_master(r.remark, pair), r.remark


@pytest.mark.parametrize("code", [RC.SEND_REPLY_MESSAGE, RC.SEND_REPLY_MESSAGE_V2])
async def test_slave_refuses_replies(pair: Pair, code: RC) -> None:
    props = encode_properties({Prop.MESSAGE_REPLY_TO_CLIENT: "c1"})
    if code == RC.SEND_REPLY_MESSAGE:
        ext: dict[str, Any] = {"producerGroup": "PG", "topic": "DefaultCluster_REPLY_TOPIC",
                               "queueId": 0, "sysFlag": 0, "bornTimestamp": 1,
                               "properties": props}  # fmt: skip
    else:
        ext = {"a": "PG", "b": "DefaultCluster_REPLY_TOPIC", "e": 0, "f": 0, "g": 1, "i": props}
    r = await pair.call(pair.slave, code, b"reply", **ext)
    assert r.code == ResponseCode.SERVICE_NOT_AVAILABLE
    assert names_broker_and_master(r.remark, pair), r.remark


async def test_master_still_takes_what_a_slave_refuses(pair: Pair) -> None:
    r = await pair.call(pair.master, RC.CONSUMER_SEND_MSG_BACK, group="G", offset=0,
                        delayLevel=0, originMsgId="X", originTopic=TOPIC)  # fmt: skip
    assert r.code == ResponseCode.SUCCESS


# -- services that only a master runs -----------------------------------------------------------


async def test_slave_leaves_delayed_messages_to_its_master(pair: Pair) -> None:
    m, s = pair.master, pair.slave
    assert not (s.schedule.running or s.timer.running or s.transactions.running)
    assert m.schedule.running and m.transactions.running
    props = encode_properties({Prop.DELAY_TIME_LEVEL: "1"})  # the store parks it in level 1
    put = await m.store.put_message(MessageToStore(TOPIC, 0, b"later", props))
    assert put.status is PutStatus.OK
    # The master delivers it; the slave gets the delivered copy by replication only.
    await check_for(lambda: s.store.get_max_offset(TOPIC, 0) == 4, timeout=5)
    assert s.store.get_max_offset(SCHEDULE_TOPIC, 0) == 1
    assert (s.schedule.delivered, m.schedule.delivered) == (0, 1)
    assert not s.schedule._wake.is_set()  # its dispatch listener did nothing either
    await check_for(lambda: s.schedule.offsets == {1: 1}, timeout=5)  # copied by SlaveSync


async def test_group_broker_ids_set_on_the_master_steer_slave_reads(pair: Pair) -> None:
    group = {"groupName": "G", "brokerId": 0, "whichBrokerWhenConsumeSlowly": 2}
    r = await pair.call(pair.master, RC.UPDATE_AND_CREATE_SUBSCRIPTIONGROUP, orjson.dumps(group))
    assert r.code == ResponseCode.SUCCESS
    assert await pair.pull(pair.master, 0) == (ResponseCode.SUCCESS, 1, 2)

    def copied() -> bool:
        g = pair.slave.groups.groups.get("G")
        return g is not None and g.which_broker_when_consume_slowly == 2

    await check_for(copied, timeout=5)
    assert await pair.pull(pair.slave, 0) == (ResponseCode.SUCCESS, 1, 2)
