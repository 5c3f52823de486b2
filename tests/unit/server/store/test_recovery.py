"""Recovery in-process: clean restarts are instant; derived files are rebuilt from the CommitLog.

Crashes of a real writer process are in tests/crash/.
"""

from __future__ import annotations

import shutil

from rmqkit.protocol.record import decode_records
from rmqkit.server.store import FileMessageStore

from .conftest import msg

FAR = 2**62


async def _write(s: FileMessageStore, n: int) -> None:
    for i in range(n):
        assert (await s.put_message(msg(queue_id=i % 3, KEYS=f"k{i}", TAGS="t"))).ok
    s.reput.drain()  # type: ignore[union-attr]


def _snapshot(s: FileMessageStore) -> dict[int, list[tuple[int, bytes]]]:
    out = {}
    for q in range(3):
        got: list[tuple[int, bytes]] = []
        off = 0
        while True:
            g = s.get_message("T", q, off, 32)
            if not g.records:
                break
            got += [(m.queue_offset, m.body) for m in decode_records(g.body(), check_crc=True)]
            off = g.next_begin_offset
        out[q] = got
    return out


async def test_clean_restart_checks_nothing_and_keeps_everything(make_store) -> None:  # type: ignore[no-untyped-def]
    s = make_store()
    await s.start()
    await _write(s, 120)
    before = _snapshot(s)
    await s.stop()
    assert not s.settings.abort_path.exists()
    s2 = make_store()
    await s2.start()
    assert s2.recovery is not None
    assert not s2.recovery.crashed and s2.recovery.records_checked == 0
    assert s2.recovery.redispatch_from == s2.recovery.valid_end == s2.max_physical_offset
    assert _snapshot(s2) == before
    r = await s2.put_message(msg(queue_id=1))
    assert r.queue_offset == 40
    await s2.stop()


async def test_consume_queues_and_index_are_rebuilt_when_deleted(make_store) -> None:  # type: ignore[no-untyped-def]
    s = make_store()
    await s.start()
    await _write(s, 150)
    before = _snapshot(s)
    await s.stop()
    shutil.rmtree(s.settings.consume_queue_dir)
    shutil.rmtree(s.settings.index_dir)
    s.settings.checkpoint_path.unlink()
    s2 = make_store()
    await s2.start()
    assert s2.recovery is not None and s2.recovery.redispatch_from == 0
    assert s2.recovery.records_checked == 150
    assert _snapshot(s2) == before
    assert len((await s2.query_message("T", "k77", 5, 0, FAR)).records) == 1
    assert (await s2.put_message(msg(queue_id=0))).queue_offset == 50
    await s2.stop()


async def test_an_abort_file_is_reported_as_a_crash(make_store) -> None:  # type: ignore[no-untyped-def]
    s = make_store()
    await s.start()
    await _write(s, 10)
    await s.stop()
    s.settings.abort_path.touch()
    s2 = make_store()
    await s2.start()
    assert s2.recovery is not None and s2.recovery.crashed
    assert s2.settings.abort_path.exists()  # present again while running
    await s2.stop()
    assert not s2.settings.abort_path.exists()
