"""Retention: delete expired CommitLog segments, then the ConsumeQueue and index files behind them.

RocketMQ's `CleanCommitLogService` and `CleanConsumeQueueService`. A segment expires
`file_reserved_time_hours` after its last write. Expired segments go at the `delete_when` hours, or
at once when disk use passes `disk_max_used_space_ratio`; past `disk_space_clean_forcibly_ratio`
the oldest segments go even unexpired (if `clean_file_forcibly_enable`). While disk use stays past
`disk_max_used_space_ratio` after cleaning, the store refuses writes with `PutStatus.DISK_FULL`.
The segment being written is never deleted.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from rmqkit.server.service import Service

if TYPE_CHECKING:
    from rmqkit.server.store.message_store import FileMessageStore

log = logging.getLogger("rmqkit.store.retention")

DiskUsage = Callable[[], float]
"""Returns the fraction (0..1) of the store's disk in use."""

FORCED_DELETES_PER_PASS = 10


def disk_usage_of(path: Path) -> DiskUsage:
    """Disk use of the file system holding `path` (its nearest existing parent)."""

    def usage() -> float:
        p = path
        while not p.exists() and p != p.parent:
            p = p.parent
        u = shutil.disk_usage(p)
        return u.used / u.total if u.total else 0.0

    return usage


class CleanService(Service):
    """Runs retention every `clean_resource_interval_ms`; `clean(manual=True)` runs it now."""

    name = "clean"

    def __init__(self, store: FileMessageStore, disk_usage: DiskUsage) -> None:
        super().__init__(store.settings.clean_resource_interval_ms / 1000)
        self.store = store
        self.disk_usage = disk_usage
        self.disk_full = False
        self.last_ratio = 0.0
        self.deleted_segments = 0

    async def _run_once(self) -> None:
        self.clean()

    def clean(self, *, manual: bool = False) -> int:
        """One retention pass; returns how many CommitLog segments were deleted."""
        s = self.store.settings
        now_s = self.store.clock_ms() / 1000
        ratio = self.disk_usage()
        over = ratio * 100 > s.disk_max_used_space_ratio
        hour = time.localtime(now_s).tm_hour
        deleted = 0
        if manual or over or hour in s.delete_hours:
            deleted += self._delete_expired(now_s - s.file_reserved_time_hours * 3600)
        if (
            s.clean_file_forcibly_enable
            and self.disk_usage() * 100 > s.disk_space_clean_forcibly_ratio
        ):
            deleted += self._delete_oldest(FORCED_DELETES_PER_PASS)
        if deleted:
            self._clean_behind()
        self.last_ratio = self.disk_usage()
        full = self.last_ratio * 100 > s.disk_max_used_space_ratio
        if full != self.disk_full:
            if full:
                log.error(
                    "disk use %.0f%% is past diskMaxUsedSpaceRatio %d%%: refusing writes",
                    self.last_ratio * 100,
                    s.disk_max_used_space_ratio,
                )
            else:
                log.warning("disk use %.0f%%: accepting writes again", self.last_ratio * 100)
        self.disk_full = full
        self.deleted_segments += deleted
        return deleted

    def _delete_expired(self, expire_before_s: float) -> int:
        q = self.store.commit_log.queue
        n = 0
        while len(q.files) > 1 and q.files[0].last_write_s < expire_before_s:
            name = q.files[0].path.name
            if not q.delete_first(1):
                break  # not flushed yet: next pass
            log.info("retention: deleted expired segment %s", name)
            n += 1
        return n

    def _delete_oldest(self, limit: int) -> int:
        q = self.store.commit_log.queue
        n = 0
        while len(q.files) > 1 and n < limit:
            name = q.files[0].path.name
            if not q.delete_first(1):
                break
            log.warning("disk nearly full: deleted unexpired segment %s", name)
            n += 1
        return n

    def _clean_behind(self) -> None:
        cl_min = self.store.commit_log.min_offset
        for cq in self.store.consume_queues.all():
            cq.delete_expired_files(cl_min)
        self.store.index.delete_below(cl_min)
