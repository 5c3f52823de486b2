"""The child of the disk-full test: a store on a small file system that fills up.

Run as `python -m tests.crash.disk_full ROOT` with ROOT on a file system of a few MiB (the test
mounts a tmpfs there in a namespace of its own). It fills the file system with another file,
sends until the store refuses, frees the room, and checks that the store took up its work
again. Prints one JSON line with what it saw; a crash (SIGBUS) prints nothing.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import orjson

from rmqkit.common.properties import encode_properties
from rmqkit.server.store import FileMessageStore, MessageToStore, PutStatus, StoreSettings
from rmqkit.testing import check_for

TOPIC = "Full"
QUEUES = 4
BODY_BYTES = 1024
FAR = 2**62


def settings(root: Path, warm: bool) -> StoreSettings:
    return StoreSettings(
        store_path_root_dir=root,
        mapped_file_size_commit_log_bytes=4 << 20,
        max_message_size_bytes=64 * 1024,
        mapped_file_size_consume_queue_bytes=20 * 30_000,
        max_hash_slot_num=4096,
        max_index_num=8192,
        warm_mapped_file_enable=warm,
        disk_max_used_space_ratio=95,
        disk_space_clean_forcibly_ratio=95,
        flush_interval_consume_queue_ms=50,
        # Retention passes only when the store asks for one, so that the full disk is found
        # by a write (a pass would find the use ratio past 95% first).
        clean_resource_interval_ms=600_000,
    )


def message(i: int) -> MessageToStore:
    props = encode_properties({"KEYS": f"key-{i}", "UNIQ_KEY": f"U{i:08d}"})
    return MessageToStore(TOPIC, i % QUEUES, os.urandom(BODY_BYTES), props)


async def run(root: Path, warm: bool) -> dict[str, object]:
    store = FileMessageStore(settings(root / "store", warm))
    await store.start()
    filler = root / "filler"
    free = os.statvfs(root).f_bavail * os.statvfs(root).f_frsize
    with filler.open("wb") as f:  # another tenant of the disk leaves the store 6 MiB
        f.write(bytes(max(0, free - (6 << 20))))
    stored: list[int] = []
    remarks: set[str] = set()
    refused = i = 0
    while refused < 500:  # well past the first refusal: nothing may give way later
        r = await store.put_message(message(i))
        if r.status is PutStatus.OK:
            stored.append(i)
        else:
            assert r.status is PutStatus.DISK_FULL, r
            refused += 1
            remarks.add(r.remark.split(" (")[0])
        i += 1
        if i % 32 == 0:
            await asyncio.sleep(0)
    assert store.reput is not None
    filler.unlink()
    resumed_at = time.monotonic()
    store.cleaner.wakeup()  # retention's next pass, now: it finds the room and lifts the refusal

    async def taken() -> bool:
        return (await store.put_message(message(i))).status is PutStatus.OK

    await check_for(taken, timeout=10, message="sends still refused once there was room")
    after = [i]
    for j in range(i + 1, i + 200):
        r = await store.put_message(message(j))
        assert r.status is PutStatus.OK, r
        after.append(j)
    reput = store.reput
    await check_for(
        lambda: reput.reput_offset == store.commit_log.max_offset and reput.no_room is None,
        timeout=10,
        message="dispatch did not take up its work once there was room",
    )
    caught_up_s = time.monotonic() - resumed_at
    every = stored + after
    in_queues = sum(store.get_max_offset(TOPIC, q) for q in range(QUEUES))
    unfound = [
        k
        for k in every
        if not (await store.query_message(TOPIC, f"key-{k}", 4, 0, FAR)).physical_offsets
    ]
    await store.stop()
    return {
        "stored": len(stored),
        "refused": refused,
        "remarks": sorted(remarks),
        "in_queues": in_queues,
        "expected_in_queues": len(every),
        "unfound_keys": unfound[:5],
        "caught_up_s": round(caught_up_s, 3),
    }


def main() -> None:
    root = Path(sys.argv[1])
    warm = sys.argv[2] == "warm"
    out = asyncio.run(run(root, warm))
    sys.stdout.write(orjson.dumps(out).decode() + "\n")


if __name__ == "__main__":
    main()
