"""The master's side of replication: `HAService` accepts slaves, one `HAConnection` serves each.

RocketMQ's `HAService` + `AcceptSocketService` + `HAConnection` (its read and write threads become
one `asyncio.Protocol` and one writer task per slave). A slave's reports arrive in `data_received`,
which also releases SYNC_MASTER waiters (`GroupTransfer.ack`); the writer task sends the CommitLog
from where the slave asked, whole records only, and an empty transfer as a heartbeat when idle.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from dataclasses import dataclass

from rmqkit.common.lifecycle import AsyncLifecycle
from rmqkit.protocol.ha import HAFrameError, ReportDecoder, encode_transfer_header
from rmqkit.server.store.message_store import FileMessageStore

log = logging.getLogger("rmqkit.ha.master")

MAX_CONNECTIONS = 64
"""More replication connections than this are refused: a broker has a few slaves, not hundreds."""
WRITE_HIGH_WATER_BYTES = 1024 * 1024
"""Bytes queued on one connection before its writer waits for the slave to read (flow control)."""


@dataclass(slots=True, frozen=True)
class SlaveStatus:
    """One connected slave, for status pages."""

    addr: str
    ack_offset: int
    """The slave's last reported CommitLog max offset (-1 before its first report)."""
    behind_bytes: int
    """The master's max offset minus `ack_offset`."""
    sent_offset: int
    """Where the next transfer to it starts (-1 before its first report)."""


def _tick(heartbeat_s: float, housekeeping_s: float) -> float:
    """How often an idle link looks at its clocks: often enough for both intervals."""
    return max(0.005, min(heartbeat_s, housekeeping_s, 4.0) / 4)


class HAConnection(asyncio.Protocol):
    """One slave's connection: reads its offset reports, sends it CommitLog bytes."""

    def __init__(self, service: HAService) -> None:
        self.service = service
        self.transport: asyncio.Transport | None = None
        self.addr = "?"
        self.decoder = ReportDecoder()
        self.request_offset = -1
        """The slave's first report: where it asked to start."""
        self.ack_offset = -1
        """The slave's latest report."""
        self.next_offset = -1
        """Where the next transfer starts."""
        self.bytes_sent = 0
        now = time.monotonic()
        self.last_read = now
        self.last_write = now
        self.closed = False
        self._wake = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()
        self._task: asyncio.Task[None] | None = None

    # -- asyncio.Protocol -------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.addr = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER_BYTES)
        if not self.service._add(self):
            if self.service.running:
                log.error("refusing replication connection from %s: %d already open",
                          self.addr, MAX_CONNECTIONS)  # fmt: skip
            self.closed = True
            transport.abort()
            return
        self._task = asyncio.get_running_loop().create_task(
            self._write_loop(), name=f"ha-connection-{self.addr}"
        )

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        try:
            reports = self.decoder.feed(data)
        except HAFrameError as exc:
            self.fail(f"bad report: {exc}")
            return
        for offset in reports:
            if not self._on_report(offset):
                return

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed:
            log.info("slave %s disconnected%s", self.addr, f": {exc}" if exc else "")
        self.closed = True
        self.service._remove(self)
        self._wake.set()
        self._writable.set()

    # -- reports ----------------------------------------------------------------------------------

    def _on_report(self, offset: int) -> bool:
        store = self.service.store
        lo, hi = store.min_physical_offset, store.max_physical_offset
        if self.request_offset < 0:
            if offset == 0:
                # RocketMQ starts an empty slave at the master's newest segment; rmqkit sends
                # the whole retained log, so the slave can serve old offsets too.
                start = lo
            elif offset < lo or offset > hi:
                self._diverged(offset, lo, hi)
                return False
            elif offset < hi and store.read_replica(offset, 1) is None:
                self.fail(
                    f"reported offset {offset} is not the start of a record in this master's "
                    f"CommitLog [{lo}, {hi}): the slave's store has diverged from this master; "
                    "stop the slave, delete its store directory (storePathRootDir) and start it "
                    "again to copy this master's log"
                )
                return False
            else:
                start = offset
            self.request_offset = offset
            self.next_offset = start
            log.warning("slave %s connected: reports offset %d, sending from %d (master has "
                        "[%d, %d))", self.addr, offset, start, lo, hi)  # fmt: skip
        elif offset > hi:
            self._diverged(offset, lo, hi)
            return False
        self.ack_offset = offset
        self.last_read = time.monotonic()
        self.service._acked(self, offset)
        self._wake.set()
        return True

    def _diverged(self, offset: int, lo: int, hi: int) -> None:
        self.fail(
            f"reported CommitLog offset {offset}, outside this master's [{lo}, {hi}]: the slave's "
            "store has diverged from this master (or was copied from another one); stop the "
            "slave, delete its store directory (storePathRootDir) and start it again to copy "
            "this master's log"
        )

    def fail(self, why: str) -> None:
        """Log why and close the connection; the slave reconnects."""
        if not self.closed:
            log.error("replication to %s closed: %s", self.addr, why)
        self.close()

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()
        self.closed = True
        self._wake.set()
        self._writable.set()

    def wake(self) -> None:
        """New CommitLog bytes: send them now instead of at the next tick."""
        if not self._wake.is_set():
            self._wake.set()

    # -- writing ----------------------------------------------------------------------------------

    async def _write_loop(self) -> None:
        svc = self.service
        tick = _tick(svc.heartbeat_s, svc.housekeeping_s)
        try:
            while not self.closed:
                if time.monotonic() - self.last_read > svc.housekeeping_s:
                    log.warning("replication to %s closed: no report for %d ms "
                                "(haHousekeepingInterval)", self.addr,
                                int((time.monotonic() - self.last_read) * 1000))  # fmt: skip
                    self.close()
                    break
                if not self._writable.is_set():
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(tick):
                            await self._writable.wait()
                    continue
                if self.next_offset >= 0:
                    if self._send_records():
                        await asyncio.sleep(0)  # let reports and sends in between
                        continue
                    if time.monotonic() - self.last_write >= svc.heartbeat_s:
                        self._write(encode_transfer_header(self.next_offset, 0))
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(tick):
                        await self._wake.wait()
        except Exception as exc:
            log.exception("replication to %s failed", self.addr)
            self.fail(f"{type(exc).__name__}: {exc}")

    def _send_records(self) -> bool:
        """Send the next whole records, if any; False when caught up (or closed)."""
        store = self.service.store
        view = store.read_replica(self.next_offset, self.service.batch_bytes)
        if view is None:
            lo = store.min_physical_offset
            if self.next_offset < lo:
                self.fail(
                    f"it needs offset {self.next_offset}, which retention already deleted (the "
                    f"log now starts at {lo}): delete the slave's store and restart it"
                )
            else:
                self.fail(f"no record starts at offset {self.next_offset}")
            return False
        n = len(view)
        if not n:
            return False
        try:
            frame = b"".join((encode_transfer_header(self.next_offset, n), view))
        finally:
            view.release()
        self._write(frame)
        self.next_offset += n
        self.bytes_sent += n
        return True

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)
            self.last_write = time.monotonic()

    async def wait_closed(self) -> None:
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def status(self, master_max: int) -> SlaveStatus:
        behind = master_max - self.ack_offset if self.ack_offset >= 0 else master_max
        return SlaveStatus(self.addr, self.ack_offset, behind, self.next_offset)


class HAService(AsyncLifecycle):
    """Listens on the HA port and replicates the store's CommitLog to every slave that connects.

    Args:
        store: the master's store; its `transfer` (SYNC_MASTER) learns of every slave report.
        host: the interface to listen on.
        port: the port (0: a free one; `port` holds the bound one after `start`).
        batch_bytes: haTransferBatchSize.
        heartbeat_ms: haSendHeartbeatInterval.
        housekeeping_ms: haHousekeepingInterval.
    """

    def __init__(
        self,
        store: FileMessageStore,
        host: str,
        port: int,
        *,
        batch_bytes: int,
        heartbeat_ms: int,
        housekeeping_ms: int,
    ) -> None:
        self.store = store
        self.host = host
        self.port = port
        self.batch_bytes = batch_bytes
        self.heartbeat_s = heartbeat_ms / 1000
        self.housekeeping_s = housekeeping_ms / 1000
        self.connections: set[HAConnection] = set()
        self.acked = 0
        """The highest offset any slave has reported (RocketMQ `push2SlaveMaxOffset`)."""
        self.accepted = 0
        """Connections accepted since start (garbage ones included)."""
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: HAConnection(self), self.host, self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self.store.add_append_listener(self._appended)
        log.info("HA service listening on %s:%d", self.host, self.port)

    async def stop(self) -> None:
        """Stop accepting, close every slave connection, release SYNC_MASTER waiters."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()  # and `_add` refuses a connection accepted just before
        conns = list(self.connections)
        for c in conns:
            c.close()
        for c in conns:
            await c.wait_closed()
        await server.wait_closed()
        if self.store.transfer is not None:
            self.store.transfer.close()

    # -- status -----------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def slave_count(self) -> int:
        """Slaves connected that have reported their offset."""
        return sum(1 for c in self.connections if c.request_offset >= 0)

    @property
    def slave_ack_offset(self) -> int:
        """The highest offset any slave has reported since start (0 before any report)."""
        return self.acked

    @property
    def bytes_behind(self) -> int | None:
        """How far the nearest connected slave is behind the master; None with no slave."""
        acks = [c.ack_offset for c in self.connections if c.ack_offset >= 0]
        return self.store.max_physical_offset - max(acks) if acks else None

    def slaves(self) -> list[SlaveStatus]:
        master_max = self.store.max_physical_offset
        return [c.status(master_max) for c in sorted(self.connections, key=lambda c: c.addr)]

    # -- called by connections --------------------------------------------------------------------

    def _add(self, conn: HAConnection) -> bool:
        if self._server is None or len(self.connections) >= MAX_CONNECTIONS:
            return False
        self.connections.add(conn)
        self.accepted += 1
        return True

    def _remove(self, conn: HAConnection) -> None:
        self.connections.discard(conn)
        self._count_slaves()

    def _acked(self, conn: HAConnection, offset: int) -> None:
        if offset > self.acked:
            self.acked = offset
        t = self.store.transfer
        if t is not None:
            t.slave_count = self.slave_count
            t.ack(offset)

    def _count_slaves(self) -> None:
        if self.store.transfer is not None:
            self.store.transfer.slave_count = self.slave_count

    def _appended(self) -> None:
        for c in self.connections:
            c.wake()
