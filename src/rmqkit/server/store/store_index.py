"""The store's IndexFiles (query by key), kept on the event loop or by the index builder process.

Start-up always works on the files in this process: recovery (`IndexService.recover`) and the
dispatch of what recovery found past the checkpoint happen before the store serves anything.
With `messageIndexProcess` (the default) the files are then handed to the index builder
(`index_builder.py`), which tails the CommitLog from where they end; the event loop keeps the
ConsumeQueues alone. Without it, `IndexService` is a reput dispatcher like the ConsumeQueues.

Every checkpoint records an `IndexMark` that says how far the index had got (`until`): the
ConsumeQueues and the index need not stand at the same offset, and the builder may lag.

A builder that dies is replaced: after `RESTART_DELAYS_S`, the files go back to the last mark
the builder synced (the recovery a start does after a crash, in a thread: a full file's hash
slots take seconds to rebuild) and a new builder goes on from there, catching up from the
CommitLog. Until then queries by key fail, saying why and that another builder is coming.
"""

from __future__ import annotations

import asyncio
import contextlib
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

RESTART_DELAYS_S = (1.0, 10.0, 60.0)
"""How long to wait before starting another builder: after the first death, the second in a
row, and every later one (a builder that dies at once each time does not spin)."""
STEADY_S = 600.0
"""A builder that ran this long before it died starts the count of deaths in a row anew."""


def _service(settings: StoreSettings) -> IndexService:
    return IndexService(settings.index_dir, settings.max_hash_slot_num, settings.max_index_num)


class StoreIndex:
    """The index as the store sees it, wherever it is kept."""

    def __init__(self, settings: StoreSettings, whole_end: Callable[[], int]) -> None:
        self.enabled = settings.message_index_enable
        self.service = _service(settings)
        self.process: IndexProcess | None = None
        """The builder, once it has the files (`hand_over`)."""
        self._settings = settings
        self._whole_end = whole_end
        self._builder = self.enabled and settings.message_index_process
        self.kept: IndexMark | None = None
        """The last mark the builder synced: what checkpoints record once it is gone."""
        self._tasks: set[asyncio.Task[None]] = set()
        self._restart: asyncio.Task[None] | None = None
        self._recovering = False
        """The restart is putting the files back (in a thread): a stop lets it finish."""
        self._deaths = 0
        """Builders that died in a row, each within `STEADY_S` of its start."""
        self._started_at = 0.0
        self._stopping = False

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
        process = IndexProcess(self._settings, self._whole_end, self._builder_gone)
        await process.start(until)
        self.process = process
        self._started_at = asyncio.get_running_loop().time()

    # -- a builder that died ----------------------------------------------------------------------

    def _builder_gone(self) -> None:
        """On the event loop, once the builder has died of itself (or did not start again)."""
        assert self.process is not None
        loop = asyncio.get_running_loop()
        if loop.time() - self._started_at >= STEADY_S:
            self._deaths = 0
        delay = RESTART_DELAYS_S[min(self._deaths, len(RESTART_DELAYS_S) - 1)]
        self._deaths += 1
        log.error(
            "the index builder %s: queries by key fail until another has put the index back "
            "to the last checkpoint and caught up; it starts in %.0f s",
            self.process.gone,
            delay,
        )
        self.process.next_start = "; another one is being started"
        self._restart = loop.create_task(self._start_again(delay), name="index-builder-restart")

    async def _start_again(self, delay: float) -> None:
        process = self.process
        assert process is not None
        await asyncio.sleep(delay)  # a stop cancels the restart here
        self._recovering = True
        try:
            until, mark = await asyncio.to_thread(self._recover_files, self.kept)
        except Exception:  # anything the files throw: try again later, as after a death
            log.exception("index: putting the files back for a new builder failed")
            if not self._stopping:
                self._builder_gone()
            return
        finally:
            self._recovering = False
        if self._stopping:
            return  # the files stand at `kept`, as the stop's checkpoint says
        try:
            await process.start(until)
        except (StoreError, OSError) as exc:
            process.gone = str(exc).removeprefix("the index builder ")
            self._builder_gone()
            return
        self.kept = mark
        self._started_at = asyncio.get_running_loop().time()
        process.next_start = ""
        log.warning("index builder started again: indexing from CommitLog offset %d", until)

    def _recover_files(self, mark: IndexMark | None) -> tuple[int, IndexMark]:
        """In a thread: the files back to `mark`, as a start after a crash; where indexing
        resumes and the mark the files then hold."""
        service = _service(self._settings)
        service.load()
        try:
            resume = mark.until if mark is not None and mark.until >= 0 else 0
            service.recover(mark, resume, clean=False)
            service.store_slots()
            return service.indexed_until, service.mark()
        finally:
            service.close()

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
        self._stopping = True
        restart = self._restart
        if restart is not None and not restart.done():
            if not self._recovering:
                restart.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await restart
        final = await self.process.stop()
        if final is None:
            return self.kept, False
        self.kept = final
        return final, True

    def close(self) -> None:
        """Close the files open here (after the checkpoint that synced them)."""
        if self.process is None:
            self.service.close()
