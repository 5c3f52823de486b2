"""SIGKILL a SYNC_MASTER under load: every message it acknowledged is on its slave.

A NameServer, a SYNC_MASTER and its slave run as `rmqkit namesrv` / `rmqkit serve --config`
subprocesses (the slave finds the master through the NameServer). Sixteen concurrent senders
write to the master; once it has acknowledged a random number of messages (SEND_OK, code 0)
the master is killed. A SYNC_MASTER answers SEND_OK only after a slave reported the record's end,
so each of those messages must be in the slave's store at the queue offset the master gave it,
with the same body. The slave's CommitLog must also be a byte prefix of the master's.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from rmqkit.common.properties import encode_properties
from rmqkit.errors import RemotingError
from rmqkit.protocol.codes import RequestCode as RC
from rmqkit.protocol.codes import ResponseCode
from rmqkit.protocol.command import RemotingCommand
from rmqkit.protocol.record import decode_records
from rmqkit.remoting.client import RemotingClient
from rmqkit.server.properties import load_broker_settings
from rmqkit.server.store import FileMessageStore
from rmqkit.testing import check_for
from tests.crash.harness import crash_seed
from tests.crash.serve import start_broker, stop_broker, tail, write_conf

pytestmark = pytest.mark.crash

TOPIC = "HAKill"
QUEUES = 4
SENDERS = 16
COMMON = "registerNameServerPeriod=1000\nhaSendHeartbeatInterval=500\n"


@dataclass(frozen=True, slots=True)
class Acked:
    queue_id: int
    queue_offset: int
    body: bytes


async def start_namesrv(log: Path) -> tuple[asyncio.subprocess.Process, int]:
    with log.open("ab") as err:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "rmqkit.cli.main", "namesrv", "--port", "0",
            stdout=asyncio.subprocess.PIPE, stderr=err,
        )  # fmt: skip
    assert proc.stdout is not None
    async with asyncio.timeout(30):
        while line := await proc.stdout.readline():
            found = re.search(rb"NameServer listening on port (\d+)", line)
            if found:
                return proc, int(found.group(1))
    proc.kill()
    await proc.wait()
    raise AssertionError(f"the NameServer did not start: {tail(log)}")


def send_command(i: int) -> RemotingCommand:
    body = f"ha-{i}-".encode() * (4 + i % 60)
    ext = dict(a="HAKillPG", b=TOPIC, c="TBW102", d=QUEUES, e=i % QUEUES, f=0, h=0, j=0)
    ext.update(g=int(time.time() * 1000), k="false", m="false")
    ext["i"] = encode_properties({"KEYS": f"k{i}"})
    return RemotingCommand(
        RC.SEND_MESSAGE_V2, ext_fields={k: str(v) for k, v in ext.items()}, body=body
    )


async def load(client: RemotingClient, addr: str, acked: list[Acked], stop: asyncio.Event) -> None:
    """Send from SENDERS tasks until `stop` or the master dies; record every SEND_OK."""
    counter = iter(range(10**9))

    async def sender() -> None:
        while not stop.is_set():
            cmd = send_command(next(counter))
            try:
                r = await client.invoke(addr, cmd, 5.0)
            except RemotingError:
                return  # the master is gone
            if r.code == ResponseCode.SUCCESS:
                acked.append(
                    Acked(int(r.ext_fields["queueId"]), int(r.ext_fields["queueOffset"]), cmd.body)
                )

    await asyncio.gather(*(sender() for _ in range(SENDERS)))


async def test_sigkill_of_a_sync_master_loses_no_acknowledged_message(tmp_path: Path) -> None:
    seed = crash_seed()
    rng = random.Random(seed)
    kill_after = rng.randint(1, 1500)
    ctx = f"seed={seed} kill_after={kill_after}"
    ns_log, m_log, s_log = (tmp_path / f"{n}.err" for n in ("namesrv", "master", "slave"))
    ns_proc, ns_port = await start_namesrv(ns_log)
    procs = [ns_proc]
    try:
        (tmp_path / "master").mkdir()
        (tmp_path / "slave").mkdir()
        m_conf = write_conf(tmp_path / "master", ns_port, COMMON + "brokerRole=SYNC_MASTER\n")
        s_conf = write_conf(tmp_path / "slave", ns_port, COMMON + "brokerRole=SLAVE\nbrokerId=1\n")
        master, m_addr = await start_broker(m_conf, m_log)
        procs.append(master)
        slave, _ = await start_broker(s_conf, s_log)
        procs.append(slave)
        acked: list[Acked] = []
        async with RemotingClient() as client:
            create = RemotingCommand(
                RC.UPDATE_AND_CREATE_TOPIC,
                ext_fields={"topic": TOPIC, "defaultTopic": "TBW102", "readQueueNums": "4",
                            "writeQueueNums": "4", "perm": "6", "topicFilterType": "SINGLE_TAG"},
            )  # fmt: skip
            assert (await client.invoke(m_addr, create, 5.0)).code == 0

            async def replicating() -> bool:  # until then a send answers SLAVE_NOT_AVAILABLE
                r = await client.invoke(m_addr, send_command(10**9), 5.0)
                return r.code == ResponseCode.SUCCESS

            await check_for(replicating, timeout=10, interval=0.1,
                            message=f"{ctx}: no slave: {tail(m_log)} {tail(s_log)}")  # fmt: skip
            stop = asyncio.Event()
            senders = asyncio.ensure_future(load(client, m_addr, acked, stop))
            try:
                await check_for(lambda: len(acked) >= kill_after or senders.done(), timeout=15,
                                interval=0.002, message=f"{ctx}: {len(acked)} acks")  # fmt: skip
                assert not senders.done(), f"{ctx}: the senders stopped: {tail(m_log)}"
                os.kill(master.pid, signal.SIGKILL)
                await master.wait()
            finally:
                stop.set()
                await senders
        await stop_broker(slave, "SIGTERM", s_log)
    finally:
        for p in procs:
            if p.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    p.kill()
                await p.wait()

    assert len(acked) >= kill_after, ctx
    slave_store = FileMessageStore(load_broker_settings(s_conf).store, role="SLAVE")
    master_store = FileMessageStore(load_broker_settings(m_conf).store)
    await slave_store.start()
    await master_store.start()
    try:
        missing = []
        for a in acked:
            got = slave_store.get_message(TOPIC, a.queue_id, a.queue_offset, 1)
            bodies = [m.body for m in decode_records(got.body(), check_crc=True)]
            if bodies != [a.body]:
                missing.append((a.queue_id, a.queue_offset, got.status.name))
        assert not missing, f"{ctx}: {len(missing)} acknowledged messages not on the slave: " \
            f"{missing[:5]}; slave log: {tail(s_log)}"  # fmt: skip
        end = slave_store.max_physical_offset
        assert end <= master_store.max_physical_offset, ctx
        for mf in slave_store.commit_log.queue.files:
            upto = min(mf.write_pos, end - mf.start)
            theirs = master_store.commit_log.read(mf.start, upto)
            assert theirs is not None and bytes(theirs) == bytes(mf.view(0, upto)), (
                f"{ctx}: the slave's segment {mf.start} differs from the master's"
            )
    finally:
        await slave_store.stop()
        await master_store.stop()
