"""Index recovery: the checkpoint's index mark, `IndexFile.restore`, `IndexService.recover`.

A crash can tear what an IndexFile rewrites in place (its header and hash slots), never the
entries a checkpoint counted; the crash tests kill a writer inside such writes
(tests/crash/test_kill_windows.py), these tests pin each rule.
"""

from __future__ import annotations

import random
import zlib
from pathlib import Path

import pytest

from rmqkit.server.store.checkpoint import CHECKPOINT, CRC, INDEX_MARK, Checkpoint, IndexMark
from rmqkit.server.store.dispatch import DispatchRequest
from rmqkit.server.store.index_file import HEADER, SLOT, IndexFile
from rmqkit.server.store.index_service import IndexService

FAR = 2**62
T0 = 1_700_000_000_000


def test_checkpoint_keeps_the_index_mark() -> None:
    mark = IndexMark(20260101000000123, (T0, T0 + 5000, 0, 4200, 17, 40))
    cp = Checkpoint(1, 2, 3, 4096, 2048, mark)
    assert Checkpoint.decode(cp.encode().ljust(4096, b"\0")) == cp
    assert Checkpoint.decode(Checkpoint(1, 2, 3, 4096, 2048).encode()) == Checkpoint(
        1, 2, 3, 4096, 2048, None
    )


def test_checkpoint_without_index_fields_still_reads() -> None:
    # The layout before the index mark: the CRC right after the 56 bytes of offsets.
    body = CHECKPOINT.pack(1, 2, 3, 4096, 0, 4096, 2048)
    old = (body + CRC.pack(zlib.crc32(body))).ljust(4096, b"\0")
    assert Checkpoint.decode(old) == Checkpoint(1, 2, 3, 4096, 2048, None)


def test_a_torn_checkpoint_reads_as_none() -> None:
    data = bytearray(Checkpoint(1, 2, 3, 4096, 2048, IndexMark(0)).encode())
    data[60] ^= 0xFF
    assert Checkpoint.decode(bytes(data)) is None
    assert Checkpoint.decode(b"short") is None


def _fill(f: IndexFile, n: int, rng: random.Random) -> list[tuple[str, int]]:
    keys = []
    for i in range(n):
        key = f"T#k{rng.randrange(n)}-{i % 3}"
        assert f.put(key, 100 * (i + 1), T0 + 10 * i)
        keys.append((key, 100 * (i + 1)))
    return keys


def test_restore_drops_later_entries_and_rebuilds_torn_slots(tmp_path: Path) -> None:
    rng = random.Random(7)
    f = IndexFile(tmp_path / "20260101000000000", slots=13, entries=200, create=True)
    kept = _fill(f, 60, rng)
    header = f.header
    f.store_slots()
    slots_before = bytes(f.file.mm[HEADER.size : f.entries_at])
    later = [(f"T#late{i}", 10_000 + i) for i in range(25)]
    for key, phy in later:
        f.put(key, phy, T0 + 99_000)
    # What a kill inside `struct.pack_into` leaves: a zero-filled header; a kill inside a
    # slot-table write, zeroed slots. The slots in memory die with the process.
    f.file.mm[: HEADER.size] = bytes(HEADER.size)
    for s in (0, 5, 12):
        SLOT.pack_into(f.file.mm, HEADER.size + s * SLOT.size, 0)
    f.file.close()

    again = IndexFile(tmp_path / "20260101000000000", slots=13, entries=200, create=False)
    assert again.restore(header) == len(later)
    assert again.header == header
    assert bytes(again.file.mm[HEADER.size : again.entries_at]) == slots_before
    for key, phy in kept:
        assert phy in again.lookup(key, 100, 0, FAR), key
    for key, _ in later:
        assert again.lookup(key, 10, 0, FAR) == []
    assert again.put("T#next", 20_000, T0 + 100_000)  # goes on after the kept entries
    assert again.count == 61 and again.lookup("T#next", 10, 0, FAR) == [20_000]
    again.close()


def test_restore_refuses_a_count_out_of_range(tmp_path: Path) -> None:
    f = IndexFile(tmp_path / "20260101000000000", slots=4, entries=10, create=True)
    with pytest.raises(ValueError, match="out of range"):
        f.restore((0, 0, 0, 0, 0, 11))
    f.close()


def _req(phy: int, key: str) -> DispatchRequest:
    return DispatchRequest("T", 0, phy, 100, 0, T0 + phy, 0, key, f"U{phy}", 0, 0, "")


def _service(path: Path) -> IndexService:
    svc = IndexService(path, slots=7, entries=21)  # 10 records (2 keys each) per file
    svc.load()
    return svc


def _filled(path: Path, end: int) -> IndexService:
    """A new index with one record every 100 bytes of CommitLog below `end`."""
    svc = _service(path)
    svc.recover(IndexMark(0), 0, clean=False)
    for phy in range(0, end, 100):
        svc.dispatch([_req(phy, f"k{phy}")])
    return svc


def test_recover_after_a_crash_trusts_only_the_mark(tmp_path: Path) -> None:
    svc = _filled(tmp_path, 1300)  # 13 records: a full file, then 3 in the second
    mark = svc.mark()  # what a checkpoint at reput offset 1300 records
    for phy in range(1300, 2500, 100):  # 12 more: the second file fills, a third starts
        svc.dispatch([_req(phy, f"k{phy}")])
    assert len(svc.files) == 3 and mark.file_stamp == int(svc.files[1].path.name)
    svc.files[1].file.mm[: HEADER.size] = bytes(HEADER.size)  # torn by the crash
    svc.close()

    svc = _service(tmp_path)
    assert svc.recover(mark, 1300, clean=False) == 1300
    assert len(svc.files) == 2 and len(list(tmp_path.iterdir())) == 2
    assert svc.files[1].header == mark.header and svc.files[1].count == 6
    for phy in range(1300, 2500, 100):  # the reput re-dispatches from the checkpoint
        svc.dispatch([_req(phy, f"k{phy}")])
    for phy in range(0, 2500, 100):
        assert svc.lookup("T", f"k{phy}", 4, 0, FAR) == [phy], phy
        assert svc.lookup("T", f"U{phy}", 4, 0, FAR) == [phy], phy
    svc.close()


def test_recover_without_a_mark_rebuilds_everything(tmp_path: Path) -> None:
    _filled(tmp_path, 1500).close()
    svc = _service(tmp_path)
    assert svc.recover(None, 900, clean=False) == 0  # from the CommitLog's first record
    assert svc.files == [] and not any(tmp_path.iterdir())
    svc.close()


def test_recover_after_a_clean_stop_keeps_every_file(tmp_path: Path) -> None:
    _filled(tmp_path, 1500).close()
    svc = _service(tmp_path)
    assert svc.recover(None, 1500, clean=True) == 1500
    assert all(svc.lookup("T", f"k{phy}", 4, 0, FAR) == [phy] for phy in range(0, 1500, 100))
    svc.close()


def test_recover_rebuilds_everything_when_the_mark_does_not_fit_its_file(tmp_path: Path) -> None:
    svc = _filled(tmp_path, 500)
    bad = IndexMark(int(svc.files[-1].path.name), (T0, T0, 0, 400, 3, 99))  # 99 > 21 entries
    svc.close()
    svc = _service(tmp_path)
    assert svc.recover(bad, 500, clean=False) == 0
    assert svc.files == [] and not any(tmp_path.iterdir())
    svc.close()


def test_a_checkpoint_before_index_until_still_reads() -> None:
    # The layout before `index_until`: the CRC right after the index header, at byte 104.
    body = CHECKPOINT.pack(1, 2, 3, 4096, 0, 4096, 2048) + INDEX_MARK.pack(7, 1, 2, 3, 4, 5, 6)
    old = (body + CRC.pack(zlib.crc32(body))).ljust(4096, b"\0")
    mark = IndexMark(7, (1, 2, 3, 4, 5, 6), until=-1)
    assert Checkpoint.decode(old) == Checkpoint(1, 2, 3, 4096, 2048, mark)
    cp = Checkpoint(1, 2, 3, 4096, 2048, IndexMark(7, (1, 2, 3, 4, 5, 6), until=3000))
    assert Checkpoint.decode(cp.encode()) == cp


def test_recover_resumes_where_the_mark_says(tmp_path: Path) -> None:
    svc = _filled(tmp_path, 800)
    mark = svc.mark()  # the index had every record below 800 (the builder may lag the reput)
    assert mark.until == 800
    for phy in range(800, 1200, 100):
        svc.dispatch([_req(phy, f"k{phy}")])
    svc.close()

    svc = _service(tmp_path)
    assert svc.recover(mark, 1100, clean=False) == 800  # below the ConsumeQueues: index alone
    assert svc.indexed_until == 800
    for phy in range(800, 1200, 100):
        svc.dispatch([_req(phy, f"k{phy}")])
    assert all(svc.lookup("T", f"k{phy}", 4, 0, FAR) == [phy] for phy in range(0, 1200, 100))
    svc.close()

    svc = _service(tmp_path)
    ahead = IndexMark(mark.file_stamp, mark.header, 1100)
    assert svc.recover(ahead, 600, clean=False, log_end=900) == 600
    assert svc.indexed_until == 900  # the CommitLog was cut at 900: what follows is new
    svc.close()

    svc = _service(tmp_path)
    older = IndexMark(mark.file_stamp, mark.header)  # no `until`: as rmqkit before it
    assert svc.recover(older, 600, clean=False) == 600 and svc.indexed_until == 600
    svc.close()


def test_recover_after_a_clean_stop_resumes_a_lagging_index(tmp_path: Path) -> None:
    svc = _filled(tmp_path, 800)
    mark = svc.mark()
    svc.close()
    svc = _service(tmp_path)
    assert svc.recover(mark, 1500, clean=True) == 800  # stopped before it caught up
    assert len(svc.files) == 1 and svc.files[-1].header == mark.header
    svc.close()
