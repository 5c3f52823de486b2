"""The store's end of the index builder process (`index_builder.py`, which documents the pipe).

`IndexProcess.dispatch` is a reput dispatcher that costs the event loop nothing per record: it
notes where the run ends and writes that offset to the builder once `ANNOUNCE_AT_BYTES` wait
(on the loop's next turn), else `ANNOUNCE_AFTER_S` after the first record not yet announced. A
broker taking one send at a time then wakes the builder a few hundred times a second, not once
per send: each wake-up cost the builder about 17 µs of the core the clients share with it.
Queries, checkpoint syncs and deletions are requests the builder answers in order, after it
has indexed everything announced before them.

If the builder dies, queries by key fail with a `StoreError` saying so until `StoreIndex`
has started another one (`on_gone`); each checkpoint meanwhile keeps the last mark the builder
synced. `start` may be called again once the builder is gone: the announcements go on from
where the new one starts, so the reput's dispatcher stays this object's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

import orjson

from rmqkit.errors import StoreError
from rmqkit.server.store.checkpoint import IndexHeader, IndexMark
from rmqkit.server.store.dispatch import DispatchRequest
from rmqkit.server.store.settings import StoreSettings

log = logging.getLogger("rmqkit.store.index")

MODULE = "rmqkit.server.store.index_builder"
START_TIMEOUT_S = 60.0
"""How long the builder may take to import and open the index files before it is ready."""
ANNOUNCE_AT_BYTES = 256 * 1024
"""Records waiting to be announced that make the announcement go on the loop's next turn."""
ANNOUNCE_AFTER_S = 0.002
"""Fewer wait this long at most (nothing waits for the index but a query, which announces)."""
STOP_TIMEOUT_S = 600.0
"""A stop waits this long for the builder to index what it lags behind, then kills it."""


def _mark(reply: list[Any]) -> IndexMark:
    stamp, header, until = reply[2], reply[3], reply[4]
    h: IndexHeader = tuple(header)
    return IndexMark(stamp, h, until)


class IndexProcess:
    """Starts the builder, announces dispatched records to it and asks it questions."""

    def __init__(
        self,
        settings: StoreSettings,
        whole_end: Callable[[], int],
        on_gone: Callable[[], None] | None = None,
    ) -> None:
        self._cfg = {
            "index_dir": str(settings.index_dir),
            "slots": settings.max_hash_slot_num,
            "entries": settings.max_index_num,
            "commit_log_dir": str(settings.commit_log_dir),
            "segment_bytes": settings.mapped_file_size_commit_log_bytes,
            "log_level": logging.getLogger().getEffectiveLevel(),
        }
        self._whole_end = whole_end
        """Every record below this CommitLog offset is whole (a query announces it first)."""
        self._on_gone = on_gone
        """Called on the event loop when the builder dies of itself (not at a stop)."""
        self.proc: asyncio.subprocess.Process | None = None
        self.gone: str | None = None
        """Why the builder is not running (None while it runs)."""
        self.next_start = ""
        """What a query refused meanwhile is told of the next builder (set by `StoreIndex`)."""
        self._target = 0
        self._sent = 0
        self._announcing: asyncio.Handle | None = None
        self._soon = False
        """`_announcing` is for the loop's next turn, not a timer."""
        self._next_id = 0
        self._waiting: dict[int, asyncio.Future[list[Any]]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._stopping = False

    async def start(self, until: int) -> None:
        """Start the builder on the index as it stands, with every record below `until` in it;
        again after it died: it then catches up with what was announced meanwhile."""
        cfg = orjson.dumps(dict(self._cfg, until=until, parent=os.getpid())).decode()
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", MODULE, cfg,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert self.proc.stdout is not None
        try:
            line = await asyncio.wait_for(self.proc.stdout.readline(), START_TIMEOUT_S)
        except TimeoutError:
            line = b""
        if not line.startswith(b'["ready"'):
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            code = await self.proc.wait()
            raise StoreError(f"the index builder did not start (exit code {code}); see its log")
        self._sent = until
        self._target = max(self._target, until)
        self.gone = None
        self._reader = asyncio.create_task(self._read(), name="index-builder-replies")
        if self._target > self._sent:
            self._announce()  # what the reput passed while no builder ran

    def dispatch(self, run: list[DispatchRequest]) -> None:
        """The reput's dispatcher: announce the run's end, soon or a little later (see above)."""
        last = run[-1]
        end = last.commit_log_offset + last.msg_size
        if end <= self._target:
            return
        self._target = end
        if self._soon:
            return
        if end - self._sent >= ANNOUNCE_AT_BYTES:
            if self._announcing is not None:
                self._announcing.cancel()
            self._soon = True
            self._announcing = asyncio.get_running_loop().call_soon(self._announce)
        elif self._announcing is None:
            self._announcing = asyncio.get_running_loop().call_later(
                ANNOUNCE_AFTER_S, self._announce
            )

    def _announce(self) -> None:
        if self._announcing is not None:
            self._announcing.cancel()  # a query's announcement, ahead of a timer
            self._announcing = None
        self._soon = False
        if self._target > self._sent and self.gone is None:
            self._write(b'["u",%d]\n' % self._target)
            self._sent = self._target

    def _write(self, line: bytes) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(line)

    async def _ask(self, *request: Any) -> list[Any]:
        if self.gone is not None:
            raise StoreError(f"the index builder is not running: {self.gone}{self.next_start}")
        # First: the answer covers every record stored before it was asked, dispatched yet or not.
        self._target = max(self._target, self._whole_end())
        self._announce()
        rid = self._next_id
        self._next_id += 1
        fut: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._waiting[rid] = fut
        self._write(orjson.dumps([request[0], rid, *request[1:]]) + b"\n")
        reply = await fut
        if reply[0] == "e":
            raise StoreError(f"the index builder could not do it: {reply[2]}")
        return reply

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        why = "its output ended"
        try:
            while line := await self.proc.stdout.readline():
                reply = orjson.loads(line)
                fut = self._waiting.pop(reply[1], None)
                if fut is not None and not fut.done():
                    fut.set_result(reply)
        except (OSError, ValueError, IndexError, TypeError) as exc:
            why = f"unreadable reply ({exc})"
        code = await self.proc.wait()
        self.gone = f"exited with code {code} ({why})"
        for fut in self._waiting.values():
            if not fut.done():
                fut.set_exception(StoreError(f"the index builder {self.gone}"))
        self._waiting.clear()
        if not self._stopping:
            if self._on_gone is None:
                log.error("the index builder %s: queries by key fail", self.gone)
            else:
                self._on_gone()

    async def lookup(
        self, topic: str, key: str, limit: int, begin_ms: int, end_ms: int
    ) -> tuple[list[int], int, int]:
        """Offsets for `topic#key` (as `IndexService.lookup`), the last entry's time and offset."""
        reply = await self._ask("q", topic, key, limit, begin_ms, end_ms)
        return reply[2], reply[3], reply[4]

    async def sync(self) -> IndexMark:
        """Sync the files written since the last sync; the mark they now hold."""
        return _mark(await self._ask("s"))

    async def delete_below(self, commit_log_min: int) -> int:
        return int((await self._ask("d", commit_log_min))[2])

    async def stop(self) -> IndexMark | None:
        """Index what was announced, store the slots, sync, end the builder; its final mark,
        or None when it could not finish (then the index needs recovery at the next start)."""
        if self.proc is None:
            return None
        self._stopping = True
        mark: IndexMark | None = None
        if self.gone is None:  # else: the next start recovers the index
            try:
                mark = _mark(await asyncio.wait_for(self._ask("x"), STOP_TIMEOUT_S))
            except (StoreError, TimeoutError) as exc:
                log.error("stop: the index builder did not finish (%s)", exc)
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 10.0)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
            mark = None
        if self._reader is not None:
            await self._reader
        return mark
