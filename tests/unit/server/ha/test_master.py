"""HAService and HAConnection against a raw socket playing the slave."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest

from rmqkit.protocol.ha import Transfer, TransferDecoder, encode_report
from rmqkit.protocol.record import BLANK
from rmqkit.server.ha import HAService
from rmqkit.server.store import FileMessageStore
from rmqkit.testing import check_for

from .conftest import fill, msg

BATCH = 4096


@pytest.fixture
async def service(master: FileMessageStore) -> AsyncIterator[HAService]:
    ha = HAService(master, "127.0.0.1", 0, batch_bytes=BATCH, heartbeat_ms=50, housekeeping_ms=1000)
    await ha.start()
    yield ha
    await ha.stop()


class RawSlave:
    """A socket that speaks the slave's half of the protocol by hand."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.decoder = TransferDecoder()
        self.frames: list[Transfer] = []

    @classmethod
    async def connect(cls, port: int) -> RawSlave:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    def report(self, offset: int) -> None:
        self.writer.write(encode_report(offset))

    async def until(self, end: int) -> list[Transfer]:
        """Read transfers until one ends at `end`; those with data, in order."""
        got: list[Transfer] = []
        while True:
            if not self.frames:
                data = await asyncio.wait_for(self.reader.read(65536), 5)
                assert data, "the master closed the connection"
                self.frames += self.decoder.feed(data)
                continue
            t = self.frames.pop(0)
            if t.body:
                got.append(t)
            if t.end >= end:
                return got

    async def closed_by_master(self) -> bool:
        while await asyncio.wait_for(self.reader.read(65536), 5):
            pass
        return True

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


def log_bytes(store: FileMessageStore) -> bytes:
    """The CommitLog from its first to its last written byte, as the segment files hold it."""
    data = b"".join(p.read_bytes() for p in sorted(store.settings.commit_log_dir.iterdir()))
    return data[: store.max_physical_offset - store.min_physical_offset]


async def test_an_empty_slave_gets_the_whole_log_as_whole_records(
    master: FileMessageStore, service: HAService
) -> None:
    await fill(master, 120)
    slave = await RawSlave.connect(service.port)
    slave.report(0)
    got = await slave.until(master.max_physical_offset)
    expected_at = 0
    for t in got:
        assert t.offset == expected_at
        pos = records = 0
        while pos < len(t.body):
            pos += BLANK.unpack_from(t.body, pos)[0]
            records += 1
        assert pos == len(t.body)  # ends on a record boundary
        assert len(t.body) <= BATCH or records == 1  # a larger record (a blank tail) alone
        expected_at = t.end
    assert b"".join(t.body for t in got) == log_bytes(master)
    await slave.close()


async def test_a_reported_offset_is_where_the_transfer_starts_and_new_data_follows(
    master: FileMessageStore, service: HAService
) -> None:
    await fill(master, 10)
    view = master.read_replica(0, 1)  # the first record alone
    assert view is not None
    second = len(view)
    view.release()
    slave = await RawSlave.connect(service.port)
    slave.report(second)
    got = await slave.until(master.max_physical_offset)
    assert got[0].offset == second
    assert (await master.put_message(msg(body=b"new"))).ok
    (new,) = await slave.until(master.max_physical_offset)
    assert b"new" in new.body
    slave.report(master.max_physical_offset)
    await check_for(lambda: service.bytes_behind == 0)
    assert service.slave_count == 1 and service.slave_ack_offset == master.max_physical_offset
    (status,) = service.slaves()
    assert status.ack_offset == status.sent_offset == master.max_physical_offset
    await slave.close()


async def test_an_idle_master_sends_heartbeats_at_its_offset(
    master: FileMessageStore, service: HAService
) -> None:
    await fill(master, 3)
    slave = await RawSlave.connect(service.port)
    slave.report(master.max_physical_offset)
    beats: list[Transfer] = []
    while len(beats) < 3:
        data = await asyncio.wait_for(slave.reader.read(65536), 5)
        assert data
        beats += slave.decoder.feed(data)
        slave.report(master.max_physical_offset)  # stay alive
    assert all(b.heartbeat and b.offset == master.max_physical_offset for b in beats)
    await slave.close()


@pytest.mark.parametrize(
    ("report", "why"),
    [
        (lambda end: end + 1, "diverged"),
        (lambda end: 7, "not the start of a record"),
        (lambda end: -5, "negative"),
    ],
)
async def test_a_bad_first_report_is_logged_and_closes_the_connection(
    master: FileMessageStore,
    service: HAService,
    caplog: pytest.LogCaptureFixture,
    report: object,
    why: str,
) -> None:
    await fill(master, 5)
    end = master.max_physical_offset
    slave = await RawSlave.connect(service.port)
    assert callable(report)
    slave.report(report(end))
    assert await slave.closed_by_master()
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any(why in e for e in errors), errors
    if why == "diverged":
        assert any(str(end + 1) in e and str(end) in e and "storePathRootDir" in e for e in errors)
    await slave.close()
    await check_for(lambda: not service.connections)


async def test_a_report_past_the_end_later_on_closes_the_connection(
    master: FileMessageStore, service: HAService
) -> None:
    await fill(master, 5)
    slave = await RawSlave.connect(service.port)
    slave.report(0)
    await slave.until(master.max_physical_offset)
    slave.report(master.max_physical_offset + 1000)
    assert await slave.closed_by_master()
    await slave.close()


async def test_a_silent_slave_is_dropped_after_the_housekeeping_interval(
    service: HAService, caplog: pytest.LogCaptureFixture
) -> None:
    slave = await RawSlave.connect(service.port)
    slave.writer.write(b"\x00\x00\x00")  # not even one whole report
    assert await slave.closed_by_master()
    assert any("haHousekeepingInterval" in r.getMessage() for r in caplog.records)
    await slave.close()


async def test_stop_closes_every_slave_connection(
    master: FileMessageStore, service: HAService
) -> None:
    slave = await RawSlave.connect(service.port)
    slave.report(0)
    await check_for(lambda: service.slave_count == 1)
    await service.stop()
    assert await slave.closed_by_master()
    assert not service.connections
    await slave.close()
