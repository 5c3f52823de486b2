"""Sends that arrive together in one read (a pipelining producer) are stored and answered as
sends one at a time would be, under both flush modes."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from rmqkit.common.properties import encode_properties
from rmqkit.protocol.codes import RequestCode as RC
from rmqkit.protocol.codes import ResponseCode
from rmqkit.protocol.command import RemotingCommand
from rmqkit.protocol.frame import FrameDecoder, encode_frame
from rmqkit.protocol.message_id import decode_offset_msg_id
from rmqkit.protocol.record import decode_records
from rmqkit.remoting.connection import Connection, HandlerResult
from rmqkit.testing import check_for

from .conftest import running_cluster

pytestmark = pytest.mark.integration


def send_frame(opaque: int, topic: str, body: bytes, queue_id: int, **props: str) -> bytes:
    ext = {
        "a": "PG", "b": topic, "c": "TBW102", "d": "4", "e": str(queue_id), "f": "0",
        "g": str(int(time.time() * 1000)), "h": "0", "i": encode_properties(props), "j": "0",
        "k": "false", "m": "false",
    }  # fmt: skip
    return encode_frame(
        RemotingCommand(RC.SEND_MESSAGE_V2, opaque=opaque, ext_fields=ext, body=body)
    )


async def exchange(addr: str, data: bytes, count: int) -> dict[int, RemotingCommand]:
    """Write `data` in one write; the `count` responses, by opaque."""
    host, port = addr.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(data)
    decoder = FrameDecoder()
    got: dict[int, RemotingCommand] = {}
    try:
        async with asyncio.timeout(10):
            while len(got) < count:
                chunk = await reader.read(65536)
                assert chunk, "the broker closed the connection"
                got.update((r.opaque, r) for r in decoder.feed(chunk))
    finally:
        writer.close()
    return got


@pytest.mark.parametrize("flush", ["ASYNC_FLUSH", "SYNC_FLUSH"])
async def test_sends_of_one_read_are_each_stored_and_answered(tmp_path: Path, flush: str) -> None:
    async with running_cluster(tmp_path, store={"flush_disk_type": flush}) as c:
        await c.create_topic("P", 4)
        runs: list[int] = []
        real_run = c.broker.server.run_processors[RC.SEND_MESSAGE_V2]

        def run(conn: Connection, cmds: list[RemotingCommand]) -> list[HandlerResult]:
            runs.append(len(cmds))
            return real_run(conn, cmds)

        c.broker.server.run_processors[RC.SEND_MESSAGE_V2] = run
        frames = [send_frame(i, "P", f"m{i}".encode(), i % 4, KEYS=f"k{i}") for i in range(40)]
        frames.append(send_frame(40, "P", b"bad queue", 9))
        frames.append(send_frame(41, "P", b"x" * (256 * 1024 + 1), 0))  # past maxMessageSize
        frames.append(send_frame(42, "P", b"later", 0, DELAY="1"))
        frames.append(send_frame(43, "P", b"no wait", 1, WAIT="false"))
        got = await exchange(c.br, b"".join(frames), len(frames))
        codes = {o: r.code for o, r in got.items()}
        assert all(codes[i] == ResponseCode.SUCCESS for i in range(40)), got
        assert codes[40] == ResponseCode.SYSTEM_ERROR and "queueId[9]" in (got[40].remark or "")
        assert codes[41] == ResponseCode.MESSAGE_ILLEGAL
        assert codes[42] == codes[43] == ResponseCode.SUCCESS
        # Per queue, the offsets follow the order of the read.
        for q in range(4):
            offs = [int(got[i].ext_fields["queueOffset"]) for i in range(q, 40, 4)]
            assert offs == list(range(10)), (q, offs)
        assert got[43].ext_fields["queueOffset"] == "10"
        assert runs and max(runs) > 10  # most of the read went through the run path
        store = c.broker.store
        await check_for(lambda: store.get_max_offset("P", 1) == 11)
        for q in range(4):
            stored = decode_records(store.get_message("P", q, 0, 32).body(), check_crc=True)
            want = [f"m{i}".encode() for i in range(q, 40, 4)] + ([b"no wait"] if q == 1 else [])
            assert [m.body for m in stored] == want
            assert stored[0].properties["CLUSTER"] == "DefaultCluster"
        assert (await store.query_message("P", "k7", 10, 0, 2**62)).physical_offsets
        if flush == "SYNC_FLUSH":  # each acknowledged send that waited is on disk
            flushed = store.commit_log.queue.flushed_offset
            assert all(
                decode_offset_msg_id(got[i].ext_fields["msgId"])[1] < flushed for i in range(40)
            )
