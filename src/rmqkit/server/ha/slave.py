"""The slave's side of replication: `HAClient` copies the master's CommitLog into the slave's store.

RocketMQ's `HAService.HAClient`. It connects to the master's HA address (haMasterAddress, else
the one the NameServer returns at registration), reports its CommitLog max offset, appends what
the master sends at exactly that offset, and reports again after every append and at least every
haSendHeartbeatInterval. A Java master may cut a record across transfers: the slave keeps the
partial tail and appends whole records only. A transfer at an unexpected offset, or a record that
fails its checks, closes the link (logged); the slave reconnects, with back-off, from its own
max offset. So does a link the master has been silent on for haHousekeepingInterval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time

from rmqkit.common.lifecycle import AsyncLifecycle
from rmqkit.errors import StoreError
from rmqkit.protocol.ha import HAFrameError, Transfer, TransferDecoder, encode_report
from rmqkit.protocol.record import BLANK
from rmqkit.server.store.commit_log import ReplicaMismatchError
from rmqkit.server.store.message_store import FileMessageStore

log = logging.getLogger("rmqkit.ha.slave")

CONNECT_TIMEOUT_S = 3.0
BACKOFF_MIN_S = 0.2
BACKOFF_MAX_S = 5.0
"""RocketMQ's HAClient waits 5 s after a failed connection; rmqkit starts lower and doubles."""


def whole_records(buf: bytearray, max_record: int) -> int:
    """How many bytes at the start of `buf` are whole records (a BLANK counts as one)."""
    n = len(buf)
    p = 0
    while n - p >= BLANK.size:
        size, _ = BLANK.unpack_from(buf, p)
        if size <= 0 or size > max_record:
            raise ReplicaMismatchError(f"a record of {size} bytes cannot be in the CommitLog")
        if n - p < size:
            break
        p += size
    return p


class _Link(asyncio.Protocol):
    """One connection to the master."""

    def __init__(self, client: HAClient, addr: str) -> None:
        self.client = client
        self.addr = addr
        self.transport: asyncio.Transport | None = None
        self.decoder = TransferDecoder(client.store.settings.mapped_file_size_commit_log_bytes)
        self.pending = bytearray()
        """Bytes of a record the master cut short, waiting for the rest."""
        self.pending_start = 0
        now = time.monotonic()
        self.opened = now
        self.last_read = now
        self.last_write = now
        self.received = 0
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.report()

    def data_received(self, data: bytes) -> None:
        if self.closed.done():
            return
        self.last_read = time.monotonic()
        self.received += len(data)
        appended = False
        try:
            for t in self.decoder.feed(data):
                appended = self._on_transfer(t) or appended
        except (HAFrameError, StoreError) as exc:
            self.fail(str(exc))
            return
        if appended:
            self.report()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)

    def _on_transfer(self, t: Transfer) -> bool:
        store = self.client.store
        if self.pending:
            expected = self.pending_start + len(self.pending)
        else:
            expected = store.max_physical_offset
        # As RocketMQ's slave: an empty log takes whatever offset the master starts at.
        if t.offset != expected and expected != 0:
            raise ReplicaMismatchError(
                f"the master sent offset {t.offset}, this slave's CommitLog continues at {expected}"
            )
        self.client.master_offset = max(self.client.master_offset, t.end)
        if not t.body:
            return False
        if not self.pending:
            self.pending_start = t.offset
        self.pending += t.body
        whole = whole_records(self.pending, store.settings.mapped_file_size_commit_log_bytes)
        if not whole:
            return False
        with memoryview(self.pending) as view, view[:whole] as part:
            store.append_replicated(self.pending_start, part)
        del self.pending[:whole]
        self.pending_start += whole
        self.client.appended_bytes += whole
        return True

    def report(self) -> None:
        """Tell the master how far this slave's CommitLog goes."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(encode_report(self.client.store.max_physical_offset))
            self.last_write = time.monotonic()

    def fail(self, why: str) -> None:
        log.error("replication from master %s closed: %s (reconnecting)", self.addr, why)
        self.close()

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()
        if not self.closed.done():
            self.closed.set_result(None)

    async def run(self, heartbeat_s: float, housekeeping_s: float) -> None:
        """Report on time and watch for silence until the link closes."""
        tick = max(0.005, min(heartbeat_s, housekeeping_s, 4.0) / 4)
        while not self.closed.done():
            now = time.monotonic()
            if now - self.last_read > housekeeping_s:
                log.warning("replication from master %s closed: nothing heard for %d ms "
                            "(haHousekeepingInterval)", self.addr,
                            int((now - self.last_read) * 1000))  # fmt: skip
                self.close()
                break
            if now - self.last_write >= heartbeat_s:
                self.report()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(tick):
                    await asyncio.shield(self.closed)

    @property
    def age_s(self) -> float:
        return time.monotonic() - self.opened

    @property
    def alive(self) -> bool:
        return not self.closed.done() and (
            time.monotonic() - self.last_read <= self.client.housekeeping_s
        )


class HAClient(AsyncLifecycle):
    """Keeps a slave's store a copy of its master's CommitLog.

    Args:
        store: the slave's store (role SLAVE: it refuses ordinary puts).
        master_address: haMasterAddress; when set, NameServer answers do not change it.
        heartbeat_ms: haSendHeartbeatInterval.
        housekeeping_ms: haHousekeepingInterval.
    """

    def __init__(
        self,
        store: FileMessageStore,
        *,
        master_address: str | None,
        heartbeat_ms: int,
        housekeeping_ms: int,
    ) -> None:
        self.store = store
        self.fixed_address = master_address
        self.master_ha_addr: str | None = master_address
        """The master's HA address (None until a NameServer tells, without haMasterAddress)."""
        self.heartbeat_s = heartbeat_ms / 1000
        self.housekeeping_s = housekeeping_ms / 1000
        self.link: _Link | None = None
        self.master_offset = 0
        """The highest CommitLog offset the master has said it has sent."""
        self.appended_bytes = 0
        self.connects = 0
        """Links opened since start."""
        self._changed = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    # -- status -----------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self.link is not None and not self.link.closed.done()

    @property
    def master_alive(self) -> bool:
        """The link is up and the master was heard from within haHousekeepingInterval."""
        return self.link is not None and self.link.alive

    @property
    def max_offset(self) -> int:
        """This slave's CommitLog max offset (what it reports)."""
        return self.store.max_physical_offset

    @property
    def bytes_behind(self) -> int:
        """Bytes the master has sent that are not yet appended (a record cut short)."""
        return max(0, self.master_offset - self.max_offset)

    # -- lifecycle --------------------------------------------------------------------------------

    def update_master_address(self, addr: str | None) -> None:
        """The master's HA address from a NameServer; a new one closes the link to the old."""
        if self.fixed_address is not None or not addr or addr == self.master_ha_addr:
            return
        log.warning("master HA address is now %s (was %s)", addr, self.master_ha_addr)
        self.master_ha_addr = addr
        self._changed.set()
        if self.link is not None:
            self.link.close()

    async def start(self) -> None:
        if self._task is None:
            self._stopping = False
            self._task = asyncio.get_running_loop().create_task(self._run(), name="ha-client")

    async def stop(self) -> None:
        self._stopping = True
        self._changed.set()
        if self.link is not None:
            self.link.close()
        if self._task is not None:
            task, self._task = self._task, None
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._changed.wait()
        self._changed.clear()

    async def _run(self) -> None:
        backoff = BACKOFF_MIN_S
        failing = False
        while not self._stopping:
            addr = self.master_ha_addr
            if addr is None:
                await self._pause(1.0)
                continue
            try:
                link = await self._connect(addr)
            except (OSError, TimeoutError) as exc:
                if not failing:
                    log.warning("cannot reach master %s for replication: %s (retrying)", addr, exc)
                failing = True
                await self._pause(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_S)
                continue
            if self._stopping or self.master_ha_addr != addr:
                link.close()  # stop() or a new address came while connecting
                continue
            if failing:
                log.warning("replicating from master %s again", addr)
            failing = False
            self.link = link
            self.connects += 1
            try:
                await link.run(self.heartbeat_s, self.housekeeping_s)
            finally:
                link.close()
            if link.received:
                backoff = BACKOFF_MIN_S
            elif not (self._stopping or failing) and link.age_s < self.heartbeat_s:
                log.warning("master %s closed the replication link before sending anything; "
                            "its log says why (a slave whose store diverged is refused)",
                            addr)  # fmt: skip
                failing = True
            if not self._stopping and self.master_ha_addr == addr:
                await self._pause(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_S)

    async def _connect(self, addr: str) -> _Link:
        host, _, port = addr.rpartition(":")
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            _, link = await loop.create_connection(lambda: _Link(self, addr), host, int(port))
        log.info("replicating from master %s from offset %d", addr, self.max_offset)
        return link
