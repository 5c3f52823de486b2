"""Master/slave replication end to end: a NameServer, a master and a slave in this process.

Ports are 0, stores in tmp_path with 64 KiB segments so the CommitLog rolls. The slave finds its
master's HA port through the NameServer, as in RocketMQ's 2m-2s examples.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from rmqkit.common.properties import encode_properties
from rmqkit.protocol.codes import RequestCode as RC
from rmqkit.protocol.codes import ResponseCode
from rmqkit.protocol.command import RemotingCommand
from rmqkit.protocol.ha import encode_report
from rmqkit.protocol.message_id import decode_offset_msg_id
from rmqkit.protocol.record import decode_records
from rmqkit.remoting.client import RemotingClient
from rmqkit.server.broker.broker import Broker
from rmqkit.server.ha import HAClient, HAService
from rmqkit.server.namesrv.namesrv import NameServer, NameServerSettings
from rmqkit.server.settings import BrokerSettings
from rmqkit.server.store import FileMessageStore
from rmqkit.server.store.flush import flush_queue
from rmqkit.server.store.settings import StoreSettings
from rmqkit.testing import check_for

pytestmark = pytest.mark.integration

SEGMENT = 64 * 1024
TOPIC = "Replicated"


def settings(root: Path, namesrv: str, role: str, **store: Any) -> BrokerSettings:
    return BrokerSettings(
        listen_host="127.0.0.1",
        listen_port=0,
        namesrv_addr=namesrv,
        broker_role=role,  # type: ignore[arg-type]
        broker_id=1 if role == "SLAVE" else 0,
        store=StoreSettings(
            store_path_root_dir=root,
            mapped_file_size_commit_log_bytes=SEGMENT,
            mapped_file_size_consume_queue_bytes=20 * 100,
            max_message_size_bytes=16 * 1024,
            max_hash_slot_num=500,
            max_index_num=2000,
            **store,
        ),
    )


@dataclass
class Pair:
    """A NameServer, at most one master and one slave of broker-a, and a client."""

    namesrv: NameServer
    root: Path
    client: RemotingClient = field(default_factory=RemotingClient)
    master: Broker | None = None
    slave: Broker | None = None

    @property
    def ns(self) -> str:
        return f"127.0.0.1:{self.namesrv.port}"

    async def start_master(self, role: str = "ASYNC_MASTER", **store: Any) -> Broker:
        self.master = Broker(settings(self.root / "master", self.ns, role, **store))
        await self.master.start()
        r = await self.call(
            self.master.addr, RC.UPDATE_AND_CREATE_TOPIC, topic=TOPIC, defaultTopic="TBW102",
            readQueueNums=4, writeQueueNums=4, perm=6, topicFilterType="SINGLE_TAG",
        )  # fmt: skip
        assert r.code == 0, r.remark
        return self.master

    async def start_slave(self, **store: Any) -> Broker:
        return await self.start_slave_at("slave", **store)

    async def start_slave_at(self, folder: str, **store: Any) -> Broker:
        self.slave = Broker(settings(self.root / folder, self.ns, "SLAVE", **store))
        await self.slave.start()
        return self.slave

    async def stop_slave(self) -> None:
        assert self.slave is not None
        await self.slave.stop()
        self.slave = None

    async def call(self, addr: str, code: int, body: bytes = b"", **ext: Any) -> RemotingCommand:
        cmd = RemotingCommand(code, ext_fields={k: str(v) for k, v in ext.items()}, body=body)
        return await self.client.invoke(addr, cmd, 5.0)

    async def send(self, i: int, addr: str | None = None) -> RemotingCommand:
        assert self.master is not None
        body = f"message {i} ".encode() * (20 + (i * 53) % 150)
        return await self.call(
            addr or self.master.addr, RC.SEND_MESSAGE_V2, body, a="PG", b=TOPIC, c="TBW102",
            d=4, e=i % 4, f=0, g=int(time.time() * 1000), h=0, j=0, k="false", m="false",
            i=encode_properties({"KEYS": f"k{i}", "TAGS": "t"}),
        )  # fmt: skip

    async def send_many(self, start: int, n: int) -> None:
        for i in range(start, start + n):
            r = await self.send(i)
            assert r.code == ResponseCode.SUCCESS, (r.code, r.remark)

    async def caught_up(self, within_s: float = 10) -> None:
        assert self.master is not None and self.slave is not None
        m, s = self.master.store, self.slave.store
        await check_for(
            lambda: s.max_physical_offset == m.max_physical_offset and s.dispatch_behind_bytes == 0,
            timeout=within_s,
            message="the slave did not catch up",
        )


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[Pair]:
    async with NameServer(NameServerSettings(host="127.0.0.1", listen_port=0)) as ns:
        p = Pair(ns, tmp_path)
        try:
            yield p
        finally:
            await p.client.close()
            for b in (p.slave, p.master):
                if b is not None:
                    await b.stop()


def segments(store: FileMessageStore, since: int = 0) -> dict[str, bytes]:
    return {
        p.name: p.read_bytes()
        for p in sorted(store.settings.commit_log_dir.iterdir())
        if int(p.name) >= since
    }


def queues(store: FileMessageStore, start: dict[int, int] | None = None) -> dict[int, list[Any]]:
    """Per queue of TOPIC: (queue offset, physical offset, record bytes) from `start` on."""
    out: dict[int, list[Any]] = {}
    for q in range(4):
        offset = (start or {}).get(q, 0)
        rows: list[Any] = []
        while (g := store.get_message(TOPIC, q, offset, 32)).records:
            for qoff, rec in zip(g.queue_offsets, g.records, strict=True):
                rows.append((qoff, int.from_bytes(rec[28:36], "big"), bytes(rec)))
            offset = g.next_begin_offset
        out[q] = rows
    return out


async def test_messages_sent_to_the_master_are_on_the_slave_byte_for_byte(pair: Pair) -> None:
    master = await pair.start_master()
    slave = await pair.start_slave()
    await pair.send_many(0, 300)
    await pair.caught_up()
    assert len(segments(master.store)) >= 3
    assert segments(slave.store) == segments(master.store)
    slave_queues = queues(slave.store)
    assert slave_queues == queues(master.store)
    assert [len(rows) for rows in slave_queues.values()] == [75] * 4
    assert slave.master_addr == master.addr and slave.master_alive
    assert master.master_addr is None and master.master_alive
    assert isinstance(master.ha, HAService) and isinstance(slave.ha, HAClient)
    await check_for(lambda: master.ha is not None and master.ha.bytes_behind == 0)  # type: ignore[union-attr]
    assert master.ha.slave_count == 1 and master.ha.slave_ack_offset == slave.ha.max_offset
    assert master.ha_server_addr == f"127.0.0.1:{master.ha.port}"


async def test_a_late_slave_catches_up_from_the_masters_min_offset(pair: Pair) -> None:
    master = await pair.start_master()
    await pair.send_many(0, 300)
    await flush_queue(master.store.commit_log.queue)
    assert master.store.commit_log.queue.delete_first(1)  # retention took the oldest segment
    low = master.store.min_physical_offset
    assert low == SEGMENT
    slave = await pair.start_slave()
    await pair.caught_up()
    assert slave.store.min_physical_offset == low
    assert segments(slave.store) == segments(master.store, since=low)
    start = {q: slave.store.get_min_offset(TOPIC, q) for q in range(4)}
    assert all(start.values())  # the queues begin past the deleted records
    assert queues(slave.store, start) == queues(master.store, start)


async def test_a_restarted_slave_resumes_from_its_own_offset(pair: Pair) -> None:
    master = await pair.start_master()
    await pair.start_slave()
    await pair.send_many(0, 60)
    await pair.caught_up()
    assert pair.slave is not None
    end = pair.slave.store.max_physical_offset
    await pair.stop_slave()
    await pair.send_many(60, 60)
    await pair.start_slave()
    await pair.caught_up()
    assert pair.slave is not None and isinstance(master.ha, HAService)
    assert [c.request_offset for c in master.ha.connections] == [end]
    assert segments(pair.slave.store) == segments(master.store)
    rows = queues(pair.slave.store)
    assert rows == queues(master.store)
    assert all([r[0] for r in rows[q]] == list(range(30)) for q in range(4))


async def test_a_sync_master_answers_success_with_a_slave_and_slave_not_available_without(
    pair: Pair,
) -> None:
    master = await pair.start_master("SYNC_MASTER")
    await pair.start_slave()
    assert isinstance(master.ha, HAService)
    await check_for(lambda: master.ha is not None and master.ha.slave_count == 1)  # type: ignore[union-attr]
    ok = await pair.send(0)
    assert ok.code == ResponseCode.SUCCESS, ok.remark
    assert pair.slave is not None
    assert pair.slave.store.max_physical_offset >= master.store.max_physical_offset
    await pair.stop_slave()
    await check_for(lambda: master.ha is not None and master.ha.slave_count == 0)  # type: ignore[union-attr]
    alone = await pair.send(1)
    assert alone.code == ResponseCode.SLAVE_NOT_AVAILABLE
    assert alone.ext_fields["queueId"] == "1" and alone.ext_fields["queueOffset"] == "0"
    _, phys = decode_offset_msg_id(alone.ext_fields["msgId"])
    stored = master.store.look_message_by_offset(phys)
    assert stored is not None and b"message 1 " in bytes(stored)


async def test_a_sync_master_answers_flush_slave_timeout_when_the_slave_never_acks(
    pair: Pair,
) -> None:
    master = await pair.start_master("SYNC_MASTER", sync_flush_timeout_ms=200)
    reader, writer = await asyncio.open_connection("127.0.0.1", master.ha_port)
    try:
        writer.write(encode_report(master.store.max_physical_offset))  # and never again
        assert isinstance(master.ha, HAService)
        await check_for(lambda: master.ha is not None and master.ha.slave_count == 1)  # type: ignore[union-attr]
        r = await pair.send(2)
        assert r.code == ResponseCode.FLUSH_SLAVE_TIMEOUT, r.remark
        assert r.ext_fields["queueId"] == "2" and r.ext_fields["queueOffset"] == "0"
        assert master.store.get_max_offset(TOPIC, 2) == 1  # stored on the master all the same
        data = await asyncio.wait_for(reader.read(65536), 5)
        assert b"message 2 " in data  # the mute "slave" was sent the record
    finally:
        writer.close()
        await writer.wait_closed()


async def test_a_slave_refuses_sends_and_names_its_master(pair: Pair) -> None:
    master = await pair.start_master()
    slave = await pair.start_slave()
    r = await pair.send(0, addr=slave.addr)
    assert r.code == ResponseCode.SERVICE_NOT_AVAILABLE
    assert r.remark is not None
    assert "slave" in r.remark and "broker-a" in r.remark and master.addr in r.remark
    assert slave.store.max_physical_offset == 0


async def test_garbage_on_the_ha_port_is_cut_off_and_replication_goes_on(pair: Pair) -> None:
    quick = {"ha_send_heartbeat_interval_ms": 100, "ha_housekeeping_interval_ms": 1000}
    master = await pair.start_master(**quick)
    await pair.start_slave(**quick)
    await pair.send_many(0, 20)
    await pair.caught_up()
    http = await asyncio.open_connection("127.0.0.1", master.ha_port)
    slow = await asyncio.open_connection("127.0.0.1", master.ha_port)
    try:
        http[1].write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        slow[1].write(b"\x00\x00")  # a slowloris: never a whole report
        for reader, _ in (http, slow):
            while await asyncio.wait_for(reader.read(65536), 5):
                pass  # until the master closes it
        await pair.send_many(20, 20)
        await pair.caught_up()
        assert isinstance(master.ha, HAService) and master.ha.slave_count == 1
        assert pair.slave is not None and pair.slave.master_alive
    finally:
        for _, w in (http, slow):
            w.close()
            await w.wait_closed()


async def test_a_pull_on_the_slave_returns_the_replicated_records(pair: Pair) -> None:
    master = await pair.start_master()
    slave = await pair.start_slave()
    await pair.send_many(0, 12)
    await pair.caught_up()
    r = await pair.call(
        slave.addr, RC.UPDATE_AND_CREATE_TOPIC, topic=TOPIC, defaultTopic="TBW102",
        readQueueNums=4, writeQueueNums=4, perm=6, topicFilterType="SINGLE_TAG",
    )  # fmt: skip
    assert r.code == 0, r.remark

    async def pull(addr: str) -> RemotingCommand:
        return await pair.call(
            addr, RC.PULL_MESSAGE, consumerGroup="CG", topic=TOPIC, queueId=3, queueOffset=0,
            maxMsgNums=32, sysFlag=4, commitOffset=0, suspendTimeoutMillis=0, subscription="*",
            subVersion=0, expressionType="TAG",
        )  # fmt: skip

    from_slave, from_master = await pull(slave.addr), await pull(master.addr)
    assert from_slave.code == ResponseCode.SUCCESS, from_slave.remark
    msgs = decode_records(from_slave.body, check_crc=True)
    assert [m.keys for m in msgs] == [[f"k{i}"] for i in (3, 7, 11)]
    assert from_slave.body == from_master.body
    assert from_slave.ext_fields["nextBeginOffset"] == "3"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def test_the_ha_port_is_the_configured_one_and_registered(pair: Pair) -> None:
    port = free_port()
    master = await pair.start_master(ha_listen_port=port)
    assert master.ha_port == port and master.ha_server_addr == f"127.0.0.1:{port}"
    slave = await pair.start_slave()
    assert isinstance(slave.ha, HAClient) and slave.ha.master_ha_addr == f"127.0.0.1:{port}"


async def test_a_taken_default_ha_port_falls_back_to_a_free_one(
    pair: Pair, caplog: pytest.LogCaptureFixture
) -> None:
    takens: list[socket.socket] = []
    try:
        for _ in range(50):  # until the port below a taken one is free for the broker
            taken = socket.socket()
            takens.append(taken)
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            listen = taken.getsockname()[1] - 1  # so that listenPort + 1 is taken
            s = settings(pair.root / "master", pair.ns, "ASYNC_MASTER").model_copy(
                update={"listen_port": listen}
            )
            master = Broker(s)
            try:
                await master.start()
            except OSError:
                continue  # the listen port itself was in use: try another pair
            pair.master = master
            break
        assert pair.master is not None, "no free port below a taken one in 50 tries"
        assert pair.master.ha_port not in (0, listen + 1)
        assert any("(listenPort + 1) is in use" in r.getMessage() for r in caplog.records)
    finally:
        for taken in takens:
            taken.close()
