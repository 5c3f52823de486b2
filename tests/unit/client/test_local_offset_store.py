"""LocalOffsetStore (BROADCASTING offsets): overlapping persists neither fail nor go back."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson

from rmqkit.client.message import MessageQueue
from rmqkit.client.offset_store import LocalOffsetStore

MQ = MessageQueue("t", "b", 0)


async def test_overlapping_persists_keep_the_newest_snapshot(tmp_path: Path) -> None:
    store = LocalOffsetStore(tmp_path, "g")
    results = []
    for offset in range(1, 41):  # persists started back to back run in threads at once
        store.update(MQ, offset)
        results.append(asyncio.ensure_future(store.persist([MQ])))
    await asyncio.gather(*results)
    table = orjson.loads((tmp_path / "g" / "offsets.json").read_bytes())["offsetTable"]
    assert table == {"t@b@0": 40}
    assert LocalOffsetStore(tmp_path, "g").table == {MQ: 40}


def test_an_older_snapshot_never_replaces_a_newer_one(tmp_path: Path) -> None:
    store = LocalOffsetStore(tmp_path, "g")
    store._write({"t@b@0": 7}, 2)
    store._write({"t@b@0": 3}, 1)  # a slow, older write arriving last
    assert LocalOffsetStore(tmp_path, "g").table == {MQ: 7}
