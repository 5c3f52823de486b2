"""Where a consumer keeps its progress (RocketMQ `OffsetStore`).

Clustering groups keep offsets on the broker (`RemoteOffsetStore`: read with
QUERY_CONSUMER_OFFSET, written with UPDATE_CONSUMER_OFFSET every few seconds and at stop; on the
master, or on a slave while the master is down, as RocketMQ's `RemoteBrokerOffsetStore`).
Broadcasting consumers each keep their own in a local file (`LocalOffsetStore`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import orjson

from rmqkit.client.message import MessageQueue
from rmqkit.errors import RemotingError
from rmqkit.protocol.codes import RequestCode, ResponseCode
from rmqkit.protocol.command import RemotingCommand
from rmqkit.protocol.route import MASTER_ID

if TYPE_CHECKING:
    from rmqkit.client.instance import ClientInstance

log = logging.getLogger("rmqkit.consumer.offsets")


class OffsetStore(Protocol):
    async def read(self, mq: MessageQueue) -> int:
        """The stored offset, or -1 when there is none."""
        ...

    def update(self, mq: MessageQueue, offset: int) -> None: ...

    async def persist(self, mqs: list[MessageQueue]) -> None: ...

    def forget(self, mq: MessageQueue) -> None: ...


class RemoteOffsetStore:
    """Offsets kept by the broker of each queue: its master, or its slave while the master is
    down (RocketMQ's onlyThisBroker=false: the slave keeps them until the master is back, then
    the master gets this client's newer offsets with the next persist)."""

    def __init__(self, instance: ClientInstance, group: str) -> None:
        self.instance = instance
        self.group = group
        self.table: dict[MessageQueue, int] = {}

    def _addr(self, mq: MessageQueue) -> str | None:
        found = self.instance.find_broker_addr(mq.broker_name, MASTER_ID)
        if found is None:
            self.instance.refresh_route_soon(mq.topic)
            return None
        return found.addr

    async def read(self, mq: MessageQueue) -> int:
        """The offset stored on the broker, or -1 when there is none.

        Raises:
            RemotingError: the broker did not answer (a route refresh is asked for).
        """
        addr = self._addr(mq)
        if addr is None:
            return self.table.get(mq, -1)
        try:
            resp = await self.instance.invoke(addr, RemotingCommand(
                RequestCode.QUERY_CONSUMER_OFFSET,
                ext_fields={"consumerGroup": self.group, "topic": mq.topic,
                            "queueId": str(mq.queue_id)},
            ))  # fmt: skip
        except RemotingError:
            self.instance.refresh_route_soon(mq.topic)
            raise
        if resp.code == ResponseCode.SUCCESS:
            off = int(resp.ext_fields.get("offset", "-1"))
            self.table[mq] = off
            return off
        return -1

    def update(self, mq: MessageQueue, offset: int) -> None:
        self.table[mq] = offset

    async def persist(self, mqs: list[MessageQueue]) -> None:
        for mq in mqs:
            off = self.table.get(mq)
            addr = self._addr(mq)
            if off is None or off < 0 or addr is None:
                continue
            try:
                await self.instance.invoke(addr, RemotingCommand(
                    RequestCode.UPDATE_CONSUMER_OFFSET,
                    ext_fields={"consumerGroup": self.group, "topic": mq.topic,
                                "queueId": str(mq.queue_id), "commitOffset": str(off)},
                ))  # fmt: skip
            except RemotingError as exc:
                log.warning("could not commit offset of %s to %s: %s", mq, addr, exc)
                self.instance.refresh_route_soon(mq.topic)

    def forget(self, mq: MessageQueue) -> None:
        self.table.pop(mq, None)


class LocalOffsetStore:
    """Offsets in `<dir>/<group>/offsets.json`, replaced atomically."""

    def __init__(self, directory: Path, group: str) -> None:
        self.path = directory / group / "offsets.json"
        self.table: dict[MessageQueue, int] = {}
        self._write_lock = threading.Lock()
        self._taken = 0  # snapshots taken by persist()
        self._written = 0  # the newest snapshot on disk
        try:
            data = orjson.loads(self.path.read_bytes())
            for key, off in data.get("offsetTable", {}).items():
                topic, broker, qid = key.rsplit("@", 2)
                self.table[MessageQueue(topic, broker, int(qid))] = int(off)
        except FileNotFoundError:
            pass
        except (orjson.JSONDecodeError, ValueError, AttributeError) as exc:
            log.error(
                "%s is unreadable (%s); starting from the consume-from-where rule", self.path, exc
            )

    async def read(self, mq: MessageQueue) -> int:
        return self.table.get(mq, -1)

    def update(self, mq: MessageQueue, offset: int) -> None:
        self.table[mq] = offset

    async def persist(self, mqs: list[MessageQueue]) -> None:
        data = {f"{q.topic}@{q.broker_name}@{q.queue_id}": o for q, o in self.table.items()}
        self._taken += 1
        await asyncio.to_thread(self._write, data, self._taken)

    def _write(self, data: dict[str, int], taken: int) -> None:
        # Writes can overlap: a cancelled periodic persist still runs in its thread while stop()
        # persists. One at a time, and never an older snapshot over a newer one.
        with self._write_lock:
            if taken <= self._written:
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            with open(tmp, "wb") as f:
                f.write(orjson.dumps({"offsetTable": data}))
                f.flush()
                os.fsync(f.fileno())
            tmp.replace(self.path)
            self._written = taken

    def forget(self, mq: MessageQueue) -> None:
        pass  # a broadcasting consumer keeps its own offsets even for queues it stops reading
