"""HAClient against a scripted master: cut records, wrong offsets, silence, heartbeats."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from rmqkit.protocol.ha import ReportDecoder, encode_transfer, encode_transfer_header
from rmqkit.server.ha import HAClient
from rmqkit.server.store import FileMessageStore
from rmqkit.testing import check_for

from .conftest import fill

Script = Callable[["FakeMaster", asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@dataclass
class FakeMaster:
    """An HA port whose every connection runs `script`; it records what slaves report."""

    script: Script
    reports: list[list[int]] = field(default_factory=list)
    server: asyncio.Server | None = None

    @property
    def addr(self) -> str:
        assert self.server is not None
        return f"127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def __aenter__(self) -> FakeMaster:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reports.append([])
        try:
            await self.script(self, reader, writer)
        finally:
            writer.close()

    async def read_reports(self, reader: asyncio.StreamReader, decoder: ReportDecoder) -> None:
        """Record reports on the newest connection until it closes."""
        while data := await reader.read(4096):
            self.reports[-1] += decoder.feed(data)

    async def first_report(self, reader: asyncio.StreamReader, decoder: ReportDecoder) -> int:
        while not self.reports[-1]:
            data = await reader.read(4096)
            assert data
            self.reports[-1] += decoder.feed(data)
        return self.reports[-1][0]


@pytest.fixture
async def source(master: FileMessageStore) -> FileMessageStore:
    await fill(master, 80)
    return master


def client(store: FileMessageStore, addr: str, **kw: int) -> HAClient:
    return HAClient(
        store,
        master_address=addr,
        heartbeat_ms=kw.get("heartbeat_ms", 5000),
        housekeeping_ms=kw.get("housekeeping_ms", 20_000),
    )


def whole_log(store: FileMessageStore) -> bytes:
    data = b"".join(p.read_bytes() for p in sorted(store.settings.commit_log_dir.iterdir()))
    return data[: store.max_physical_offset]


@pytest.fixture
async def running() -> AsyncIterator[list[HAClient]]:
    clients: list[HAClient] = []
    yield clients
    for c in clients:
        await c.stop()


async def test_records_cut_anywhere_by_the_master_are_appended_whole(
    source: FileMessageStore, slave: FileMessageStore, running: list[HAClient]
) -> None:
    log = whole_log(source)

    async def java_like(m: FakeMaster, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        decoder = ReportDecoder()
        offset = await m.first_report(r, decoder)
        for at in range(offset, len(log), 1000):  # 1000-byte cuts, blind to record bounds
            w.write(encode_transfer(at, log[at : at + 1000]))
        await w.drain()
        await m.read_reports(r, decoder)

    async with FakeMaster(java_like) as fake:
        ha = client(slave, fake.addr)
        running.append(ha)
        await ha.start()
        await check_for(lambda: slave.max_physical_offset == source.max_physical_offset)
        assert whole_log(slave) == log
        await check_for(lambda: fake.reports[0][-1] == len(log))
        reports = fake.reports[0]
        assert reports[0] == 0 and reports == sorted(reports) and len(reports) > 2
        assert ha.master_alive and ha.connected and ha.bytes_behind == 0


async def test_a_transfer_at_the_wrong_offset_closes_the_link_and_it_resumes_from_the_slave(
    source: FileMessageStore,
    slave: FileMessageStore,
    running: list[HAClient],
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = whole_log(source)
    view = source.read_replica(0, 5000)
    assert view is not None
    first = len(view)
    view.release()

    async def skipping(m: FakeMaster, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        decoder = ReportDecoder()
        offset = await m.first_report(r, decoder)
        if len(m.reports) == 1:
            w.write(encode_transfer(0, log[:first]))
            w.write(encode_transfer(first + 40, log[first + 40 : first + 500]))  # a gap
        else:
            for at in range(offset, len(log), 4000):
                w.write(encode_transfer(at, log[at : at + 4000]))
        await w.drain()
        await m.read_reports(r, decoder)

    async with FakeMaster(skipping) as fake:
        ha = client(slave, fake.addr)
        running.append(ha)
        await ha.start()
        await check_for(lambda: slave.max_physical_offset == len(log), timeout=5)
        assert fake.reports[1][0] == first  # reconnected, from its own end
        assert whole_log(slave) == log
        assert ha.connects == 2
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any(f"master sent offset {first + 40}" in e and str(first) in e for e in errors)


async def test_a_corrupt_record_closes_the_link_and_keeps_what_came_before(
    source: FileMessageStore, slave: FileMessageStore, running: list[HAClient]
) -> None:
    log = bytearray(whole_log(source))
    view = source.read_replica(0, 3000)
    assert view is not None
    good = len(view)
    view.release()
    log[good + 200] ^= 0xFF

    async def corrupt(m: FakeMaster, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        decoder = ReportDecoder()
        offset = await m.first_report(r, decoder)
        w.write(encode_transfer(offset, bytes(log[offset : offset + good])))
        w.write(encode_transfer(offset + good, bytes(log[offset + good : offset + 2 * good])))
        await w.drain()
        await m.read_reports(r, decoder)

    async with FakeMaster(corrupt) as fake:
        ha = client(slave, fake.addr)
        running.append(ha)
        await ha.start()
        await check_for(lambda: len(fake.reports) >= 2 and fake.reports[1][:1] == [good])
        assert slave.max_physical_offset == good


async def test_a_silent_master_is_left_and_reconnected(
    slave: FileMessageStore, running: list[HAClient]
) -> None:
    async def silent(m: FakeMaster, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await m.read_reports(r, ReportDecoder())

    async with FakeMaster(silent) as fake:
        ha = client(slave, fake.addr, heartbeat_ms=20, housekeeping_ms=300)
        running.append(ha)
        await ha.start()
        await check_for(lambda: len(fake.reports) >= 2, timeout=5)
        assert len(fake.reports[0]) >= 3  # it reported on its heartbeat meanwhile
        assert set(fake.reports[0]) == {0}


async def test_heartbeats_keep_the_link_and_the_new_address_replaces_the_old(
    slave: FileMessageStore, running: list[HAClient]
) -> None:
    async def beating(m: FakeMaster, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        decoder = ReportDecoder()
        await m.first_report(r, decoder)
        reading = asyncio.ensure_future(m.read_reports(r, decoder))
        while not reading.done():
            w.write(encode_transfer_header(0, 0))
            await asyncio.sleep(0.02)

    async with FakeMaster(beating) as a, FakeMaster(beating) as b:
        ha = HAClient(slave, master_address=None, heartbeat_ms=5000, housekeeping_ms=200)
        running.append(ha)
        await ha.start()
        assert not ha.master_alive
        ha.update_master_address(a.addr)
        await check_for(lambda: ha.master_alive)
        await asyncio.sleep(0.5)  # longer than the housekeeping interval: the beats keep it
        assert ha.master_alive and len(a.reports) == 1
        ha.update_master_address(b.addr)
        await check_for(lambda: len(b.reports) == 1 and ha.master_alive)
        assert ha.master_ha_addr == b.addr


async def test_a_configured_master_address_is_kept_whatever_the_nameserver_says(
    slave: FileMessageStore,
) -> None:
    ha = client(slave, "127.0.0.1:1")
    ha.update_master_address("127.0.0.1:2")
    assert ha.master_ha_addr == "127.0.0.1:1"
    free = HAClient(slave, master_address=None, heartbeat_ms=5000, housekeeping_ms=20_000)
    free.update_master_address("127.0.0.1:2")
    free.update_master_address(None)  # a NameServer that does not know the master
    assert free.master_ha_addr == "127.0.0.1:2" and not free.master_alive
