"""Retention: expired segments go at deleteWhen or when the disk fills; writes stop when full."""

from __future__ import annotations

import time
from pathlib import Path

from rmqkit.server.store import FileMessageStore, GetStatus, PutStatus
from rmqkit.server.store.flush import flush_queue

from .conftest import msg, small_settings

HOUR_MS = 3600 * 1000


class Disk:
    def __init__(self) -> None:
        self.ratio = 0.10

    def __call__(self) -> float:
        return self.ratio


def _hour_now() -> int:
    return time.localtime().tm_hour


def _store(tmp_path: Path, disk: Disk, clock: list[int], **kw: object) -> FileMessageStore:
    s = FileMessageStore(
        small_settings(tmp_path, file_reserved_time_hours=1, **kw),  # type: ignore[arg-type]
        clock_ms=lambda: clock[0],
        disk_usage=disk,
    )
    return s


async def _fill(s: FileMessageStore, n: int) -> None:
    for i in range(n):
        assert (await s.put_message(msg(queue_id=i % 2, body=b"r" * 3000))).ok
    s.reput.drain()  # type: ignore[union-attr]
    await flush_queue(s.commit_log.queue)  # retention deletes only flushed segments
    await s.flush_logics()


async def test_expired_segments_wait_for_the_delete_hour(tmp_path: Path) -> None:
    disk = Disk()
    clock = [int(time.time() * 1000)]
    other_hour = f"{(_hour_now() + 12) % 24:02d}"
    s = _store(tmp_path, disk, clock, delete_when=other_hour)
    await s.start()
    await _fill(s, 100)
    files_before = len(s.commit_log.queue.files)
    assert files_before >= 4
    clock[0] += 2 * HOUR_MS
    assert s.cleaner.clean() == 0  # expired, but not the hour, and the disk is fine
    assert s.cleaner.clean(manual=True) == files_before - 1  # the active segment stays
    await s.stop()


async def test_expired_segments_go_at_the_delete_hour_and_queues_follow(tmp_path: Path) -> None:
    disk = Disk()
    clock = [int(time.time() * 1000)]
    clean_hour = time.localtime(clock[0] / 1000 + 2 * 3600).tm_hour
    s = _store(tmp_path, disk, clock, delete_when=f"{clean_hour:02d}")
    await s.start()
    await _fill(s, 100)
    assert s.cleaner.clean() == 0  # nothing expired yet
    clock[0] += 2 * HOUR_MS
    await _fill(s, 2)  # a fresh write keeps the newest segment alive
    deleted = s.cleaner.clean()
    assert deleted >= 3
    cl_min = s.commit_log.min_offset
    assert cl_min > 0
    lo = s.get_min_offset("T", 0)
    assert lo > 0
    g = s.get_message("T", 0, 0, 32)
    assert (g.status, g.next_begin_offset) == (GetStatus.OFFSET_TOO_SMALL, lo)
    assert s.get_message("T", 0, lo, 32).status is GetStatus.FOUND
    # ConsumeQueue files wholly behind the CommitLog are gone too (50 entries per file here).
    cq = s.find_consume_queue("T", 0)
    assert cq is not None and cq.files.files[0].start // 20 <= lo
    await s.stop()
    again = FileMessageStore(small_settings(tmp_path), disk_usage=disk)
    await again.start()
    assert again.get_min_offset("T", 0) == lo
    assert again.get_message("T", 0, lo, 1).status is GetStatus.FOUND
    await again.stop()


async def test_full_disk_cleans_expired_at_once_then_refuses_writes(tmp_path: Path) -> None:
    disk = Disk()
    clock = [int(time.time() * 1000)]
    other_hour = f"{(_hour_now() + 12) % 24:02d}"
    s = _store(tmp_path, disk, clock, delete_when=other_hour, clean_file_forcibly_enable=False)
    await s.start()
    await _fill(s, 60)
    clock[0] += 2 * HOUR_MS
    disk.ratio = 0.80  # past diskMaxUsedSpaceRatio (75)
    assert s.cleaner.clean() >= 1  # expired files go whatever the hour
    assert s.cleaner.disk_full  # still past the ratio: refuse writes
    r = await s.put_message(msg())
    assert r.status is PutStatus.DISK_FULL and "diskMaxUsedSpaceRatio" in r.remark
    disk.ratio = 0.50
    s.cleaner.clean()
    assert (await s.put_message(msg())).ok
    await s.stop()


async def test_unflushed_segments_are_never_deleted(tmp_path: Path) -> None:
    disk = Disk()
    clock = [int(time.time() * 1000)]
    s = _store(tmp_path, disk, clock, flush_interval_commit_log_ms=60_000)
    await s.start()
    for _ in range(60):
        assert (await s.put_message(msg(body=b"u" * 3000))).ok
    disk.ratio = 0.95
    assert s.cleaner.clean() == 0  # nothing is on disk yet: a flush may be running on them
    await flush_queue(s.commit_log.queue)
    assert s.cleaner.clean() > 0
    await s.stop()


async def test_forcible_clean_deletes_unexpired_segments_past_its_ratio(tmp_path: Path) -> None:
    disk = Disk()
    clock = [int(time.time() * 1000)]
    other_hour = f"{(_hour_now() + 12) % 24:02d}"
    s = _store(tmp_path, disk, clock, delete_when=other_hour)
    await s.start()
    await _fill(s, 60)
    n = len(s.commit_log.queue.files)
    disk.ratio = 0.90  # past diskSpaceCleanForciblyRatio (85), nothing expired
    assert s.cleaner.clean() == n - 1
    assert len(s.commit_log.queue.files) == 1
    await s.stop()
