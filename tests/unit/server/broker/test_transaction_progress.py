"""Transaction progress across restarts: which decisions a restarted broker still knows, and a
commit the broker made but had not recorded when it stopped."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from rmqkit.common.names import TRANS_HALF_TOPIC, TRANS_OP_HALF_TOPIC
from rmqkit.common.properties import encode_properties
from rmqkit.protocol.record import StoredMessage, decode_records
from rmqkit.server.broker.broker import Broker
from rmqkit.server.broker.transaction import COMMIT, ROLLBACK, TransactionService, to_half
from rmqkit.server.settings import BrokerSettings
from rmqkit.server.store import MessageToStore, PutStatus, StoreSettings
from rmqkit.testing import check_for


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[Broker]:
    settings = BrokerSettings(
        listen_host="127.0.0.1", listen_port=0,
        transaction_check_interval_ms=3_600_000,  # passes run only when a test asks
        store=StoreSettings(store_path_root_dir=tmp_path / "store",
                            mapped_file_size_commit_log_bytes=1 << 20,
                            max_message_size_bytes=64 * 1024),
    )  # fmt: skip
    async with Broker(settings) as b:
        yield b


async def half(b: Broker, body: bytes, **props: str) -> StoredMessage:
    """Store a half message for topic TX and return it as stored."""
    p = {"UNIQ_KEY": f"U-{body.decode()}", "PGROUP": "PG", "TRAN_MSG": "true", **props}
    now = int(time.time() * 1000)
    m = MessageToStore("TX", 0, body, encode_properties(p), born_timestamp=now)
    r = await b.store.put_message(to_half(m))
    assert r.status is PutStatus.OK
    await check_for(lambda: b.store.get_max_offset(TRANS_HALF_TOPIC, 0) > r.queue_offset)
    return read(b, TRANS_HALF_TOPIC)[r.queue_offset]


def read(b: Broker, topic: str) -> list[StoredMessage]:
    g = b.store.get_message(topic, 0, 0, 64)
    return decode_records(g.body()) if g.records else []


async def test_decisions_past_an_unresolved_half_are_known_after_a_restart(broker: Broker) -> None:
    tx = broker.transactions
    await half(broker, b"waiting", CHECK_IMMUNITY_TIME_IN_SECONDS="3600")
    decided = await half(broker, b"decided")
    await tx.end(decided, ROLLBACK)
    await check_for(lambda: broker.store.get_max_offset(TRANS_OP_HALF_TOPIC, 0) == 1)
    await tx._run_once()  # reads the op; stops at the first half, not due for a check yet
    assert tx.half_offset == 0
    assert tx.op_offset == 0  # its op is still needed: it names a half not passed yet
    again = TransactionService(broker)  # what a restart starts with
    again._catch_up_ops()
    assert again.resolved == {decided.queue_offset}


async def test_a_commit_made_but_not_recorded_is_not_made_twice(
    broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = await half(broker, b"paid")
    copy_props = {k: v for k, v in h.properties.items() if k not in ("REAL_TOPIC", "REAL_QID")}
    copies = [await half(broker, b"paid", **{**copy_props, "TRANSACTION_CHECK_TIMES": str(n)})
              for n in (1, 2)]  # fmt: skip
    tx = broker.transactions

    async def crashed(half: StoredMessage) -> None:  # stopped before the op was written
        return None

    monkeypatch.setattr(tx, "_record_decision", crashed)
    r = await tx.end(copies[0], COMMIT)
    assert r is not None and r.status is PutStatus.OK
    await check_for(lambda: len(read(broker, "TX")) == 1)
    monkeypatch.undo()
    again = TransactionService(broker)  # a restart: nothing remembered
    assert await again.end(copies[1], COMMIT) is None  # found in TX: recorded, not committed
    await check_for(lambda: broker.store.get_max_offset(TRANS_OP_HALF_TOPIC, 0) == 1)
    assert [m.body for m in read(broker, "TX")] == [b"paid"]
    assert copies[1].queue_offset in again.resolved


async def test_ops_read_past_as_written_leave_the_state_a_full_read_gives(broker: Broker) -> None:
    """The service skips decoding the ops it writes itself; what it then knows (decisions,
    the ops still needed, how far it read) must be what reading every op gives."""
    tx = broker.transactions
    await half(broker, b"open", CHECK_IMMUNITY_TIME_IN_SECONDS="3600")
    for i in range(6):
        h = await half(broker, f"h{i}".encode())
        await tx.end(h, COMMIT if i % 2 else ROLLBACK)
    await check_for(lambda: broker.store.get_max_offset(TRANS_OP_HALF_TOPIC, 0) == 6)
    fresh = TransactionService(broker)
    fresh._catch_up_ops()
    assert tx._op_read == fresh._op_read == 6
    assert tx.resolved == fresh.resolved == set(range(1, 7))
    assert tx._op_refs == fresh._op_refs == [(i, i + 1) for i in range(6)]
    assert set(tx.resolved_keys) == set(fresh.resolved_keys)
