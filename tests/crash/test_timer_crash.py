"""SIGKILL a broker (`rmqkit serve`, a subprocess) holding timer messages that are not due yet.

Round 1 sends a group A due within half a second and a group B due seconds later, waits until A
is delivered and the timer checkpoint has moved past it, and kills the broker. Round 2 starts it
again on the same store and kills it once B has started to arrive, in the middle of delivering.
Finally a broker in this process starts on the store: every message of both groups must reach
its topic, none before its time, and A exactly once (it was checkpointed before the first kill).
B may be repeated only for what was delivered after the last checkpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from rmqkit.client.message import Message
from rmqkit.client.producer import Producer
from rmqkit.protocol.codes import RequestCode
from rmqkit.protocol.command import RemotingCommand
from rmqkit.protocol.record import StoredMessage, decode_records
from rmqkit.remoting.client import RemotingClient
from rmqkit.server.broker.broker import Broker
from rmqkit.server.namesrv.namesrv import NameServer, NameServerSettings
from rmqkit.server.properties import load_broker_settings
from rmqkit.testing import check_for
from tests.crash.serve import start_broker, tail

pytestmark = pytest.mark.crash

TOPIC = "CrashTimer"
QUEUES = 4
A_COUNT, B_COUNT = 30, 200
A_DELAY_MS = (100, 400)
B_DELAY_MS = (3000, 5000)
"""B must not fall due before round 1 has killed the broker; on a slow machine some may, and
then the test proves less, but still holds."""
PRECISION_MS = 100


def now_ms() -> int:
    return int(time.time() * 1000)


async def sigkill(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGKILL)
    assert await proc.wait() == -signal.SIGKILL


async def delivered_count(client: RemotingClient, addr: str) -> int:
    total = 0
    for q in range(QUEUES):
        fields = {"topic": TOPIC, "queueId": str(q)}
        cmd = RemotingCommand(RequestCode.GET_MAX_OFFSET, ext_fields=fields)
        r = await client.invoke(addr, cmd, 5.0)
        total += int(r.ext_fields.get("offset", 0)) if r.code == 0 else 0
    return total


def checkpoint(store_root: Path) -> dict[str, object]:
    try:
        data = json.loads((store_root / "config" / "timerCheckpoint.json").read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def read_topic(broker: Broker) -> list[StoredMessage]:
    out: list[StoredMessage] = []
    for q in range(QUEUES):
        offset = 0
        while (g := broker.store.get_message(TOPIC, q, offset, 32)).records:
            msgs = decode_records(g.body())
            out += msgs
            offset += len(msgs)
    return out


async def test_sigkilled_broker_delivers_every_timer_message_after_restart(tmp_path: Path) -> None:
    root = tmp_path / "store"
    log = tmp_path / "broker.err"
    asked: dict[bytes, int] = {}
    async with NameServer(NameServerSettings(host="127.0.0.1", listen_port=0)) as ns:
        conf = tmp_path / "broker.properties"
        conf.write_text(
            f"brokerName=timer-crash\nnamesrvAddr=127.0.0.1:{ns.port}\nlistenPort=0\n"
            f"storePathRootDir={root}\nmappedFileSizeCommitLog=1048576\nmaxMessageSize=65536\n"
            f"defaultTopicQueueNums={QUEUES}\ntimerPrecisionMs={PRECISION_MS}\n"
        )
        nsaddr = f"127.0.0.1:{ns.port}"

        # Round 1: A delivered and checkpointed, B pending, then SIGKILL.
        proc, addr = await start_broker(conf, log)
        try:
            await check_for(lambda: ns.routes.cluster_info().broker_addr_table, timeout=10)
            async with Producer("PT", nsaddr) as p, RemotingClient() as client:
                for group, count, (lo, hi) in (
                    ("A", A_COUNT, A_DELAY_MS),
                    ("B", B_COUNT, B_DELAY_MS),
                ):
                    for i in range(count):
                        body = f"{group}{i}".encode()
                        delay = lo + (hi - lo) * i // count
                        asked[body] = now_ms() + delay
                        props = {"TIMER_DELAY_MS": str(delay)}
                        await p.send(Message(TOPIC, body, keys=[body.decode()], properties=props))
                first_b = min(v for k, v in asked.items() if k.startswith(b"B"))
                b_slots = first_b - PRECISION_MS
                await check_for(
                    lambda: (rt := checkpoint(root).get("readTimeMs")) is not None
                    and isinstance(rt, int) and rt >= b_slots,
                    timeout=10, message="the checkpoint never moved past group A",
                )  # fmt: skip
                before_kill = await delivered_count(client, addr)
        finally:
            await sigkill(proc)
        assert before_kill >= A_COUNT

        # Round 2: start again, kill once B has started to arrive.
        proc, addr = await start_broker(conf, log)
        try:
            async with RemotingClient() as client:
                for _ in range(400):
                    if await delivered_count(client, addr) > A_COUNT:
                        break
                    await asyncio.sleep(0.02)
        finally:
            await sigkill(proc)

        # Final: a clean broker in this process delivers the rest.
        settings = load_broker_settings(conf, listen_port=0)
        async with Broker(settings) as broker:
            await check_for(
                lambda: {m.body for m in read_topic(broker)} >= set(asked), timeout=15,
                message=f"lost timer messages; broker log: {tail(log)}",
            )  # fmt: skip
            await check_for(lambda: broker.timer.pending == 0, timeout=5)
            got = read_topic(broker)
    copies = Counter(m.body for m in got)
    assert set(copies) == set(asked)
    a_dups = {b: n for b, n in copies.items() if b.startswith(b"A") and n != 1}
    assert not a_dups, f"group A was checkpointed before the kill yet repeated: {a_dups}"
    early = [(m.body, m.store_timestamp, asked[m.body]) for m in got
             if m.store_timestamp < asked[m.body]]  # fmt: skip
    assert not early, f"delivered before their time: {early[:5]}"
    for m in got:
        assert "REAL_TOPIC" not in m.properties and m.keys == [m.body.decode()]
