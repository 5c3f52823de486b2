"""`rmqkit demo` (store edition): what the storage engine does, shown on a small order stream.

Writes orders through the store, reads them back as a consumer would (by queue offset, filtered by
tag), finds one by key, then kills a writer process mid-stream and shows recovery keeping every
acknowledged message. Replaced by the order-service demo once the broker and starter exist.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rmqkit.common.hashing import tags_code
from rmqkit.common.properties import Prop, encode_properties
from rmqkit.protocol.record import decode_records
from rmqkit.server.store import FileMessageStore, MessageToStore, StoreSettings, TagFilter

TOPIC = "order"
QUEUES = 4
TAGS = ("created", "paid", "shipped")


def _settings(root: Path, flush: str = "ASYNC_FLUSH") -> StoreSettings:
    return StoreSettings(
        store_path_root_dir=root,
        mapped_file_size_commit_log_bytes=4 * 1024 * 1024,
        mapped_file_size_consume_queue_bytes=20 * 10_000,
        max_message_size_bytes=512 * 1024,
        max_hash_slot_num=10_000,
        max_index_num=40_000,
        flush_disk_type=flush,
    )


def _order(i: int) -> MessageToStore:
    tag = TAGS[i % len(TAGS)]
    body = f'{{"order_id": {i // 3}, "event": "{tag}"}}'.encode()
    props = encode_properties({Prop.TAGS: tag, Prop.KEYS: f"order-{i // 3}"})
    return MessageToStore(
        TOPIC, (i // 3) % QUEUES, body, props, born_timestamp=int(time.time() * 1000)
    )


async def run_store_demo(data_dir: Path | None, messages: int) -> int:
    with tempfile.TemporaryDirectory(prefix="rmqkit-demo-") as tmp:
        root = data_dir or Path(tmp) / "store"
        print(f"rmqkit store demo: data in {root}")
        store = FileMessageStore(_settings(root))
        await store.start()
        t0 = time.perf_counter()
        for i in range(messages):
            r = await store.put_message(_order(i))
            if not r.ok:
                print(f"  put failed: {r.status.name} {r.remark}")
                return 1
        dt = time.perf_counter() - t0
        await asyncio.sleep(0)
        store.reput.drain() if store.reput else None
        print(
            f"  wrote {messages} order events in {dt * 1000:.0f} ms "
            f"({messages / dt:,.0f}/s); CommitLog is {store.max_physical_offset:,} bytes "
            f"in {len(store.commit_log.queue.files)} segment(s)"
        )
        for q in range(QUEUES):
            print(
                f"  queue {TOPIC}-{q}: offsets {store.get_min_offset(TOPIC, q)}.."
                f"{store.get_max_offset(TOPIC, q)}"
            )
        paid = TagFilter(frozenset({tags_code("paid")}))
        got = store.get_message(TOPIC, 0, 0, 8, paid)
        msgs = decode_records(got.body())
        print(
            f"  a consumer of tag 'paid' on queue 0 reads {len(msgs)} messages, e.g. "
            f"{msgs[0].body.decode()} at offset {msgs[0].queue_offset}; next pull from "
            f"{got.next_begin_offset}"
        )
        found = await store.query_message(TOPIC, "order-42", 10, 0, int(time.time() * 1000) + 1000)
        print(
            f"  query by key 'order-42': "
            f"{[m.body.decode() for m in decode_records(b''.join(found.records))]}"
        )
        await store.stop()

        print("  crash test: a writer process appends with SYNC_FLUSH and is killed with SIGKILL")
        crash_root = Path(tmp) / "crash"
        proc = subprocess.Popen(  # noqa: ASYNC220 -- read line by line below, on purpose
            [sys.executable, "-m", "rmqkit.cli.store_demo", str(crash_root)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        acked = 0
        for line in proc.stdout:
            acked = int(line)
            if acked >= 300:
                break
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        store = FileMessageStore(_settings(crash_root, "SYNC_FLUSH"))
        await store.start()
        rec = store.recovery
        kept = sum(store.get_max_offset(TOPIC, q) for q in range(QUEUES))
        print(
            f"  after the kill: {acked} appends were acknowledged; recovery "
            f"{'found a crash' if rec and rec.crashed else 'saw a clean stop'}, "
            f"CommitLog valid to byte {rec.valid_end if rec else 0:,}, "
            f"{kept} messages readable"
        )
        await store.stop()
        ok = kept >= acked
        print("  every acknowledged message survived" if ok else "  LOST ACKNOWLEDGED MESSAGES")
        return 0 if ok else 1


async def _writer(root: Path) -> None:
    store = FileMessageStore(_settings(root, "SYNC_FLUSH"))
    await store.start()
    i = 0
    while True:
        r = await store.put_message(_order(i))
        if r.ok:
            i += 1
            print(i, flush=True)


if __name__ == "__main__":
    asyncio.run(_writer(Path(sys.argv[1])))
