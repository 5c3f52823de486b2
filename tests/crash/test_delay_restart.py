"""Pending delay-level messages survive a broker restart, clean (SIGTERM) and SIGKILL.

Shortened levels (`messageDelayLevel=200ms 1500ms 2500ms 3500ms`), progress written every 200 ms
(`flushDelayOffsetInterval`, 10 s by default). Round 1 sends messages on
all four levels to `rmqkit serve`, waits until level 1 has been delivered and its progress
written to `config/delayOffset.json`, and stops the broker with levels 2-4 pending. With SIGKILL,
round 2 starts it again and kills it once level 2 has started to arrive, in the middle of
delivering. Finally a broker in this process starts on the store and delivers the rest.

Every message must reach its topic, none before its level's delay from when it was sent (lower
bounds only: how late is not tested). Level 1 was recorded before the first stop, so it arrives
exactly once; after a clean stop every message does. After SIGKILL a level may repeat what was
delivered after its progress was last written.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest

from rmqkit.client.message import Message
from rmqkit.client.producer import Producer
from rmqkit.common.names import SCHEDULE_TOPIC
from rmqkit.remoting.client import RemotingClient
from rmqkit.server.broker.broker import Broker
from rmqkit.server.namesrv.namesrv import NameServer, NameServerSettings
from rmqkit.server.properties import load_broker_settings
from rmqkit.testing import check_for
from tests.crash.serve import (
    Stop,
    config_json,
    read_topic,
    start_broker,
    stop_broker,
    tail,
    topic_size,
    write_conf,
)

pytestmark = pytest.mark.crash

TOPIC = "RestartDelay"
LEVELS_MS = (200, 1500, 2500, 3500)
PER_LEVEL = 25


def now_ms() -> int:
    return int(time.time() * 1000)


def level_offset(conf: Path, level: int) -> int:
    table = config_json(conf, "delayOffset.json").get("offsetTable")
    return int(table.get(str(level), 0)) if isinstance(table, dict) else 0


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
async def test_pending_delayed_messages_survive_a_restart(tmp_path: Path, how: Stop) -> None:
    log = tmp_path / "broker.err"
    asked: dict[bytes, int] = {}
    levels = " ".join(f"{ms}ms" for ms in LEVELS_MS)
    async with NameServer(NameServerSettings(host="127.0.0.1", listen_port=0)) as ns:
        extra = f"messageDelayLevel={levels}\nflushDelayOffsetInterval=200\n"
        conf = write_conf(tmp_path, ns.port, extra)
        nsaddr = f"127.0.0.1:{ns.port}"

        # Round 1: every level pending, level 1 delivered and recorded, then stop.
        proc, addr = await start_broker(conf, log)
        try:
            await check_for(lambda: ns.routes.cluster_info().broker_addr_table, timeout=10)
            async with Producer("DelayRestartPG", nsaddr, instance_name="r1") as p:
                for i in range(PER_LEVEL):
                    for level, delay in enumerate(LEVELS_MS, start=1):
                        body = f"L{level}-{i}".encode()
                        asked[body] = now_ms() + delay
                        await p.send(Message(TOPIC, body, keys=[body.decode()], delay_level=level))
            await check_for(lambda: level_offset(conf, 1) == PER_LEVEL, timeout=10,
                            message=f"level 1 was never recorded: {tail(log)}")  # fmt: skip
            async with RemotingClient() as client:
                delivered = await topic_size(client, addr, TOPIC)
                pending = await topic_size(client, addr, SCHEDULE_TOPIC, len(LEVELS_MS))
        finally:
            await stop_broker(proc, how, log)
        assert PER_LEVEL <= delivered < len(asked) and pending == len(asked)

        # Round 2 (SIGKILL): start again, kill once level 2 has started to arrive.
        if how == "SIGKILL":
            proc, addr = await start_broker(conf, log)
            try:
                async with RemotingClient() as client:
                    await check_for(
                        lambda: level_offset(conf, 2) > 0, timeout=10,
                        message=f"level 2 never started after the restart: {tail(log)}",
                    )  # fmt: skip
                    delivered = await topic_size(client, addr, TOPIC)
            finally:
                await stop_broker(proc, "SIGKILL", log)
            assert delivered > PER_LEVEL

        # Final: a broker in this process delivers the rest.
        async with Broker(load_broker_settings(conf, listen_port=0)) as broker:
            await check_for(
                lambda: {m.body for m in read_topic(broker, TOPIC)} >= set(asked), timeout=15,
                message=f"lost delayed messages; broker log: {tail(log)}",
            )  # fmt: skip
            got = read_topic(broker, TOPIC)
    copies = Counter(m.body for m in got)
    assert set(copies) == set(asked)
    repeated = {b: n for b, n in copies.items() if n > 1}
    if how == "SIGTERM":
        assert not repeated, f"a clean restart repeated deliveries: {repeated}"
    else:
        assert not {b for b in repeated if b.startswith(b"L1-")}, f"level 1 repeated: {repeated}"
    early = [(m.body, m.store_timestamp - asked[m.body]) for m in got
             if m.store_timestamp < asked[m.body]]  # fmt: skip
    assert not early, f"delivered before their level's delay (ms early): {early[:5]}"
    for m in got:
        assert m.keys == [m.body.decode()] and "REAL_TOPIC" not in m.properties
        assert "DELAY" not in m.properties
