"""Bad input gets a clear answer or a closed connection; the broker keeps serving everyone."""

from __future__ import annotations

import asyncio
import struct
import time

import pytest

from rmqkit.protocol.codes import RequestCode as RC
from rmqkit.protocol.codes import ResponseCode
from rmqkit.protocol.command import RemotingCommand
from rmqkit.protocol.frame import encode_frame
from rmqkit.testing import check_for

from .conftest import Cluster
from .test_broker_protocol import pull, send

pytestmark = pytest.mark.integration


async def test_missing_header_fields_are_named(cluster: Cluster) -> None:
    r = await cluster.call(RC.SEND_MESSAGE_V2, b"x", a="PG", c="TBW102")
    assert r.code == ResponseCode.SYSTEM_ERROR and "'topic'" in (r.remark or "")
    r = await cluster.call(RC.PULL_MESSAGE, consumerGroup="G", topic="T")
    assert r.code == ResponseCode.SYSTEM_ERROR and "queueId" in (r.remark or "")
    r = await cluster.call(RC.GET_MAX_OFFSET, topic="T", queueId="zero")
    assert r.code == ResponseCode.SYSTEM_ERROR and "not a number" in (r.remark or "")


@pytest.mark.parametrize("topic", ["bad topic", "t" * 128, "ünï", "a/b"])
async def test_illegal_topic_names(cluster: Cluster, topic: str) -> None:
    r = await send(cluster, topic, b"x")
    assert r.code == ResponseCode.MESSAGE_ILLEGAL and r.remark
    c = await cluster.call(RC.UPDATE_AND_CREATE_TOPIC, topic=topic, readQueueNums=1,
                           writeQueueNums=1, perm=6)  # fmt: skip
    assert c.code != 0 and c.remark


async def test_queue_ids_and_offsets_out_of_range(cluster: Cluster) -> None:
    await cluster.create_topic("R", 2)
    assert (await send(cluster, "R", b"x", 5)).code == ResponseCode.SYSTEM_ERROR
    p = await pull(cluster, "R", 9, 0)
    assert p.code == ResponseCode.SYSTEM_ERROR and "illegal" in (p.remark or "")
    assert (await send(cluster, "R", b"x", 0)).code == 0
    await check_for(lambda: cluster.broker.store.get_max_offset("R", 0) == 1)
    far = await pull(cluster, "R", 0, 10**12)
    assert far.code == ResponseCode.PULL_OFFSET_MOVED and far.ext_fields["nextBeginOffset"] == "0"
    neg = await pull(cluster, "R", 0, -5)
    assert neg.code == ResponseCode.PULL_OFFSET_MOVED and neg.ext_fields["nextBeginOffset"] == "0"


async def test_huge_and_empty_bodies(cluster: Cluster) -> None:
    await cluster.create_topic("B", 1)
    huge = await send(cluster, "B", b"x" * (256 * 1024 + 1))
    assert huge.code == ResponseCode.MESSAGE_ILLEGAL and "maxMessageSize" in (huge.remark or "")
    empty = await send(cluster, "B", b"")
    assert empty.code == 0
    bad_batch = await cluster.call(
        RC.SEND_BATCH_MESSAGE, b"\x00\x00\x00\x09garbage",
        a="PG", b="B", c="TBW102", d=1, e=0, f=0, g=0, h=0, i="", m="true",
    )  # fmt: skip
    assert bad_batch.code == ResponseCode.MESSAGE_ILLEGAL


async def test_garbage_body_for_json_requests(cluster: Cluster) -> None:
    r = await cluster.call(RC.HEART_BEAT, b"{not json")
    assert r.code == ResponseCode.SYSTEM_ERROR and "JSON" in (r.remark or "")
    r = await cluster.call(RC.HEART_BEAT, b'{"consumerDataSet": []}')
    assert r.code == ResponseCode.SYSTEM_ERROR and "clientID" in (r.remark or "")


async def test_unknown_code(cluster: Cluster) -> None:
    r = await cluster.call(9999)
    assert r.code == ResponseCode.REQUEST_CODE_NOT_SUPPORTED
    assert r.remark == "request type 9999 not supported"


async def test_client_disconnecting_mid_request_harms_nobody(cluster: Cluster) -> None:
    await cluster.create_topic("D", 1)
    host, port = cluster.br.split(":")
    for _ in range(3):
        _reader, writer = await asyncio.open_connection(host, int(port))
        cmd = RemotingCommand(
            RC.PULL_MESSAGE,
            opaque=1,
            ext_fields={"consumerGroup": "G", "topic": "D", "queueId": "0", "queueOffset": "0",
                        "maxMsgNums": "32", "sysFlag": "6", "commitOffset": "0",
                        "suspendTimeoutMillis": "30000", "subscription": "*",
                        "subVersion": "0"},
        )  # fmt: skip
        writer.write(encode_frame(cmd))
        await writer.drain()
        await check_for(lambda: cluster.broker.pull_holds.count >= 1)
        writer.close()  # gone while its pull is held
        half = encode_frame(RemotingCommand(RC.GET_MAX_OFFSET, ext_fields={"topic": "D"}))
        _reader2, writer2 = await asyncio.open_connection(host, int(port))
        writer2.write(half[: len(half) // 2])  # half a frame, then gone
        writer2.close()
    assert (await send(cluster, "D", b"after")).code == 0  # wakes the orphaned holds harmlessly
    p = await pull(cluster, "D", 0, 0)
    assert p.code == 0
    await check_for(lambda: cluster.broker.pull_holds.count == 0)


async def test_oversized_frame_closes_only_that_connection(cluster: Cluster) -> None:
    host, port = cluster.br.split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(struct.pack(">i", 64 * 1024 * 1024) + b"\0" * 16)
    assert await asyncio.wait_for(reader.read(), 3) == b""
    writer.close()
    assert (await cluster.call(RC.GET_MAX_OFFSET, topic="x", queueId=0)).code == 0


async def test_negative_commit_offsets_are_ignored(cluster: Cluster) -> None:
    # ali-ons sends commitOffset=-1 for a queue at offset 0.
    await cluster.call(RC.UPDATE_CONSUMER_OFFSET, consumerGroup="G", topic="T", queueId=0,
                       commitOffset=-1)  # fmt: skip
    q = await cluster.call(RC.QUERY_CONSUMER_OFFSET, consumerGroup="G", topic="T", queueId=0)
    assert q.code == 0 and q.ext_fields["offset"] == "0"
    assert time.time() > 0
