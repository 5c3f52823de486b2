"""`rmqkit serve` in a subprocess for the restart tests: start it, stop it (SIGTERM or SIGKILL),
ask it for offsets, and read a topic from a store once the broker is in this process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sys
from pathlib import Path
from typing import Literal

from rmqkit.protocol.codes import RequestCode
from rmqkit.protocol.command import RemotingCommand
from rmqkit.protocol.record import StoredMessage, decode_records
from rmqkit.remoting.client import RemotingClient
from rmqkit.server.broker.broker import Broker

Stop = Literal["SIGTERM", "SIGKILL"]


def write_conf(tmp_path: Path, namesrv_port: int, extra: str) -> Path:
    """A broker.properties with small files, port 0, the store in tmp_path, plus `extra` lines."""
    conf = tmp_path / "broker.properties"
    conf.write_text(
        f"brokerName=restart\nnamesrvAddr=127.0.0.1:{namesrv_port}\nlistenPort=0\n"
        f"storePathRootDir={tmp_path / 'store'}\nmappedFileSizeCommitLog=1048576\n"
        f"maxMessageSize=65536\ndefaultTopicQueueNums=2\n{extra}"
    )
    return conf


def tail(log: Path) -> str:
    return log.read_text(errors="replace")[-2000:] if log.exists() else ""


async def start_broker(conf: Path, log: Path) -> tuple[asyncio.subprocess.Process, str]:
    """Start `rmqkit serve --config conf`; returns the process and the address it listens on."""
    with log.open("ab") as err:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "rmqkit.cli.main", "serve", "--config", str(conf),
            stdout=asyncio.subprocess.PIPE, stderr=err, cwd=conf.parent,
            env={**os.environ, "RMQKIT_LISTEN_HOST": "127.0.0.1"},
        )  # fmt: skip
    assert proc.stdout is not None
    seen = b""
    async with asyncio.timeout(30):
        while line := await proc.stdout.readline():
            seen += line
            found = re.search(rb"listening on (127\.0\.0\.1:\d+)", line)
            if found:
                return proc, found.group(1).decode()
    proc.kill()
    await proc.wait()
    raise AssertionError(f"the broker did not start: {seen!r} {tail(log)}")


async def stop_broker(proc: asyncio.subprocess.Process, how: Stop, log: Path) -> None:
    """SIGKILL it, or SIGTERM it and check it stopped cleanly."""
    if how == "SIGKILL":
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        assert await proc.wait() == -signal.SIGKILL
        return
    proc.send_signal(signal.SIGTERM)
    assert proc.stdout is not None
    async with asyncio.timeout(30):
        rest = await proc.stdout.read()
        code = await proc.wait()
    assert code == 0 and b"stopped cleanly" in rest, f"exit {code}: {rest!r} {tail(log)}"


async def max_offset(client: RemotingClient, addr: str, topic: str, queue_id: int) -> int:
    cmd = RemotingCommand(
        RequestCode.GET_MAX_OFFSET, ext_fields={"topic": topic, "queueId": str(queue_id)}
    )
    r = await client.invoke(addr, cmd, 5.0)
    return int(r.ext_fields.get("offset", 0)) if r.code == 0 else 0


async def topic_size(client: RemotingClient, addr: str, topic: str, queues: int = 2) -> int:
    return sum([await max_offset(client, addr, topic, q) for q in range(queues)])


def read_topic(broker: Broker, topic: str, queues: int = 2) -> list[StoredMessage]:
    """Every message of `topic` in a broker of this process, queue by queue."""
    out: list[StoredMessage] = []
    for q in range(queues):
        offset = 0
        while (g := broker.store.get_message(topic, q, offset, 32)).records:
            msgs = decode_records(g.body())
            out += msgs
            offset += len(msgs)
    return out


def config_json(conf: Path, name: str) -> dict[str, object]:
    """A file of the broker's `config/` folder, {} while it does not exist."""
    try:
        data = json.loads((conf.parent / "store" / "config" / name).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
