"""The store's IndexFiles (query by key), kept on the event loop or by the index builder process.

Start-up always works on the files in this process: recovery (`IndexService.recover`) and the
dispatch of what recovery found past the checkpoint happen before the store serves anything.
With `messageIndexProcess` (the default) the files are then handed to the index builder
(`index_builder.py`), which tails the CommitLog from where they end; the event loop keeps the
ConsumeQueues alone. Without it, `IndexService` is a reput dispatcher like the ConsumeQueues.

Every checkpoint records an `IndexMark` that says how far the index had got (`until`): the
ConsumeQueues and the index need not stand at the same offset, and the builder may lag.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from rmqkit.errors import StoreError
from rmqkit.server.store.checkpoint import IndexMark
from rmqkit.server.store.dispatch import Dispatcher
from rmqkit.server.store.index_file import IndexFile
from rmqkit.server.store.index_process import IndexProcess
from rmqkit.server.store.index_service import IndexService
from rmqkit.server.store.recovery import RecoveryReport
from rmqkit.server.store.settings import StoreSettings

log = logging.getLogger("rmqkit.store.index")


class StoreIndex:
    """The index as the store sees it, wherever it is kept."""

    def __init__(self, settings: StoreSettings, whole_end: Callable[[], int]) -> None:
        self.enabled = settings.message_index_enable
        self.service = IndexService(
            settings.index_dir, settings.max_hash_slot_num, settings.max_index_num
        )
        self.process: IndexProcess | None = None
        """The builder, once it has the files (`hand_over`)."""
        self._settings = settings
        self._whole_end = whole_end
        self._builder = self.enabled and settings.message_index_process
        self.kept: IndexMark | None = None
        """The last mark the builder synced: what checkpoints record once it is gone."""
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def dispatchers(self) -> list[Dispatcher]:
        if not self.enabled:
            return []
        if self.process is not None:
            return [self.process.dispatch]
        return [self.service.dispatch]

    # -- in this process: start-up, and the whole life without the builder ----------------------

    def recover(self, mark: IndexMark | None, report: RecoveryReport, *, clean: bool) -> int:
        """Load the files and make them agree with the checkpoint's `mark`; returns where
        indexing resumes (see `IndexService.recover`)."""
        if not self.enabled:
            return report.redispatch_from
        self.service.load()
        return self.service.recover(
            mark, report.redispatch_from, clean=clean, log_end=report.valid_end
        )

    def mark(self) -> IndexMark | None:
        """Where the files here stand (None without an index): take it before syncing them."""
        return self.service.mark() if self.enabled and self.process is None else None

    def local_files(self) -> list[IndexFile]:
        """The files open in this process (none once the builder has them)."""
        return self.service.files if self.process is None else []

    def dirty_files(self) -> list[IndexFile]:
        """The files to sync for a checkpoint (see `IndexService.dirty`)."""
        return self.service.dirty() if self.enabled and self.process is None else []

    async def hand_over(self) -> None:
        """With `messageIndexProcess`: give the files to a new builder (after start-up's sync)."""
        if not self._builder:
            return
        self.service.store_slots()  # the builder reads them from the file
        until = self.service.indexed_until
        self.kept = self.service.mark()
        self.service.close()
        process = IndexProcess(self._settings, self._whole_end)
        await process.start(until)
        self.process = process

    # -- either way -------------------------------------------------------------------------------

    async def checkpoint_mark(self, local: IndexMark | None) -> IndexMark | None:
        """The mark a checkpoint records: `local` (taken before this process synced its files),
        or the builder's, once it has synced its own; the last good one if it cannot."""
        if self.process is None:
            return local
        if self.process.gone is None:
            try:
                self.kept = await self.process.sync()
            except StoreError as exc:
                log.error("index: %s; checkpoints keep the index at %s", exc, self.kept)
        return self.kept

    async def lookup(
        self, topic: str, key: str, limit: int, begin_ms: int, end_ms: int
    ) -> tuple[list[int], int, int]:
        """Offsets for `topic#key` and the last entry's store time and offset (0s without one)."""
        if self.process is not None:
            return await self.process.lookup(topic, key, limit, begin_ms, end_ms)
        svc = self.service
        found = svc.lookup(topic, key, limit, begin_ms, end_ms) if self.enabled else []
        return found, svc.last_update_timestamp, svc.last_update_phy_offset

    def delete_below(self, commit_log_min: int) -> None:
        """Delete the files whose every entry points below `commit_log_min` (the builder's, by
        a request that retention does not wait for)."""
        if self.process is None:
            if self.enabled:
                self.service.delete_below(commit_log_min)
            return
        if self.process.gone is None:
            task = asyncio.get_running_loop().create_task(self._delete_there(commit_log_min))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _delete_there(self, commit_log_min: int) -> None:
        assert self.process is not None
        try:
            await self.process.delete_below(commit_log_min)
        except StoreError as exc:
            log.error("index: deleting old files: %s", exc)

    async def stop(self) -> tuple[IndexMark | None, bool]:
        """Store the slots and close the builder (this process syncs its files afterwards):
        the final mark, and whether the index is whole (False: the next start recovers it)."""
        if self.process is None:
            try:
                self.service.store_slots()  # kept in memory while written; a clean start reads them
            except OSError as exc:  # DiskFullError among them
                # The abort file stays: the next start rebuilds the slots from the entries.
                log.error("stop: the index's hash slots could not be written (%s)", exc)
                return self.mark(), False
            return self.mark(), True
        for task in list(self._tasks):
            await task
        final = await self.process.stop()
        if final is None:
            return self.kept, False
        self.kept = final
        return final, True

    def close(self) -> None:
        """Close the files open here (after the checkpoint that synced them)."""
        if self.process is None:
            self.service.close()
