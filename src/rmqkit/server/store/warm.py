"""CommitLogWarmer: brings the CommitLog's last file into memory ahead of the writer, on the
other core.

RocketMQ's `warmMapedFileEnable` writes zeros into a new CommitLog file before the writer uses
it, so that the writer's first touch of each page is not a page fault that allocates it. rmqkit
does the same in steps, from one thread: it keeps up to four chunks past the writer warm, a chunk
(16 MiB, less in small files) at a time, with calls that run without the interpreter lock. The
lead grows with what the writer has written in the file, so a quiet broker warms next to
nothing. On a VM that hands out memory on first touch, a new page costs about 7-12 us, so a 1 KiB
record's append costs 2-3 us less when its page was warmed beforehand.

How a chunk is warmed depends on the flush:
- ASYNC_FLUSH: zeros are written into it (`pwrite`). The writer's first touch then costs about
  0.14 us a page. The pages become dirty, which costs nothing here: the flush writes them anyway.
- SYNC_FLUSH: it is allocated (`posix_fallocate`: unwritten blocks) and read (`preadv`, into
  one scratch buffer), which puts zero pages into the page cache, where the writer's `pwrite`s
  (see `commit_log.py`) find them. The pages stay clean, so a group commit's fdatasync does not
  write the zeros ahead of the writer, and no waiting send waits for them. The file has
  readahead off (`MappedFile`), so the pages come in small folios.

Either way the chunk's blocks are allocated before the writer gets there, so a full disk shows
as a failed fill (ENOSPC), not as SIGBUS in the writer (`MappedFile.reserve`). Where the writer
takes a window past the fills itself, `make_way` allocates it.

Either way the thread spends more CPU on a page (9-13 us) than the writer's own fault would
have cost (7-8 us): warming pays where a core has time to spare, and the event loop's core is the
one that runs out first.

Who may write where. The writer (the event loop's thread) writes below `_warmed` freely; before
it writes past `ahead` it calls `make_way`, which waits for a fill in flight where it is going
and then takes over everything up to its end. The thread fills only from `_warmed` on, and moves
`_warmed` when a fill is done. Both change these under one lock; the thread never touches the
file's own fields, so the writer reads `ahead` without the lock. However the thread ends (a
stop, or a fault of its own), it says so under the lock, and a writer waiting for a fill goes
on: the writer holds the event loop while it waits.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading

from rmqkit.server.store.mapped_file import PAGE, PREFAULT_BYTES, MappedFile, MappedFileQueue

log = logging.getLogger("rmqkit.store.warm")

WARM_CHUNK_BYTES = 16 << 20
"""Most bytes per fill (one `pwrite` or `preadv`): each costs two hand-overs of the interpreter
lock, so not too few."""
WARM_CHUNKS_AHEAD = 4
"""How many chunks past the writer the thread keeps the file warm."""
READ_BUFFER_BYTES = 1 << 20
"""The scratch buffer a read-warming thread reads into: one `preadv` names it once per MiB."""


def chunk_bytes_for(file_size: int) -> int:
    """A sixteenth of a file, in whole pages, at most WARM_CHUNK_BYTES (small files in tests)."""
    return max(PAGE, min(WARM_CHUNK_BYTES, file_size // 16 // PAGE * PAGE))


class CommitLogWarmer:
    """Keeps the CommitLog file being written warm up to four chunks ahead of the writer.

    Args:
        queue: the CommitLog's files.
        zero_fill: write zeros ahead (ASYNC_FLUSH); else read ahead (SYNC_FLUSH).
    """

    def __init__(self, queue: MappedFileQueue, *, zero_fill: bool = True) -> None:
        self.queue = queue
        self.zero_fill = zero_fill
        self.chunk_bytes = chunk_bytes_for(queue.file_size)
        self.lead_bytes = WARM_CHUNKS_AHEAD * self.chunk_bytes
        self._window = min(PREFAULT_BYTES, self.chunk_bytes)
        # Untouched zero pages cost no memory; the read buffer is made by the thread that uses it.
        self._zeros = memoryview(bytes(self.chunk_bytes)) if zero_fill else memoryview(b"")
        self._scratch: bytearray | None = None
        self._cond = threading.Condition()
        self._file: MappedFile | None = None
        self._since = 0
        """Where the writer was in `_file` when the warmer took it on."""
        self._warmed = 0
        """Bytes of `_file` below this are warm (zero-filled or read), or the writer's."""
        self._filling_to = 0
        """Past `_warmed` while a fill is in flight (it covers `_warmed` to here)."""
        self._failed: MappedFile | None = None
        """The file a fill failed in (disk full, say): not warmed again."""
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.filled_bytes = 0
        """Bytes zero-filled or read ahead so far (tests and the benchmark read this)."""
        self.writer_waits = 0
        """How often the writer caught up with a fill in flight and waited for it."""

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    async def start(self) -> None:
        """Warm the last file (the writer's next append adopts it) and every new one."""
        self._stopping = False
        self.queue.warmer = self
        last = self.queue.last()
        if last is not None and not last.full:
            last.warmer = self
            last.ahead = 0  # its next append calls `make_way`
        self._thread = threading.Thread(target=self._run, name="warm-commitlog", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        """Stop filling; returns once no fill is in flight."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self.queue.warmer = None
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
            self._thread = None
        for mf in self.queue.files:
            mf.warmer = None
            mf.ahead = 0
        self._file = None

    # -- the writer's side (the event loop's thread) --------------------------------------------

    def make_way(self, mf: MappedFile, pos: int, end: int) -> tuple[int, int, int]:
        """See `Warmer.make_way`. Where the writer takes a window itself (a file new to the
        warmer, or a writer ahead of the fills), it allocates that window here: every byte
        below `_warmed` is then allocated, by a fill or by the writer.

        Raises:
            DiskFullError: no room for the window the writer was about to take.
        """
        with self._cond:
            if self._stopping or mf is self._failed:
                mf.warmer = None
                return mf.size, mf.size, 0
            if self._file is not mf:
                # A file new to the warmer. The bytes past the writer are zeros (new, or cut
                # back by recovery); the writer takes the first window itself.
                stop = min(mf.size, end + self._window)
                mf.reserve(pos, stop, 0)
                self._file = mf
                self._since = end
                self._warmed = self._filling_to = stop
            else:
                while self._filling_to > self._warmed and end > self._warmed:
                    self.writer_waits += 1
                    self._cond.wait()
                if end > self._warmed:
                    # The writer is ahead of the fills: it takes a window, as without warming.
                    stop = min(mf.size, end + self._window)
                    mf.reserve(pos, stop, 0)
                    self._warmed = self._filling_to = stop
            warmed = self._warmed
            self._cond.notify_all()
        # Call again halfway to the end of the warm stretch, to top it up in time.
        room = warmed - end
        return warmed, (end + room // 2 if room > PAGE else warmed), warmed

    def release(self, mf: MappedFile) -> None:
        with self._cond:
            while self._file is mf and self._filling_to > self._warmed:
                self._cond.wait()
            if self._file is mf:
                self._file = None
        mf.warmer = None

    # -- the thread ------------------------------------------------------------------------------

    def _next_fill(self) -> tuple[MappedFile, int, int] | None:
        """Under the lock: the file and range to fill next, claimed; None when far enough."""
        mf = self._file
        if mf is None:
            return None
        # The lead grows with what the writer has written here, up to `lead_bytes`: a broker
        # that takes a message now and then has next to nothing warmed ahead of it.
        lead = min(self.lead_bytes, mf.write_pos - self._since)
        start = self._warmed
        room = min(mf.size - start, lead - (start - mf.write_pos), self.chunk_bytes)
        if room < self._window:
            return None
        end = start + room // PAGE * PAGE
        self._filling_to = end
        return mf, start, end

    def _fill(self, mf: MappedFile, start: int, end: int) -> None:
        """Warm `start` to `end` of `mf`: write zeros there, or allocate and read it, through
        the page cache. Either way its blocks are allocated when this returns (see `make_way`)."""
        if not self.zero_fill:
            os.posix_fallocate(mf.fd, start, end - start)
            self._read(mf, start, end)
            return
        zeros = self._zeros[: end - start]
        while zeros:
            n = os.pwrite(mf.fd, zeros, start)
            start += n
            zeros = zeros[n:]

    def _read(self, mf: MappedFile, start: int, end: int) -> None:
        """Read `start` to `end` of `mf` into the page cache, in one call where it can.

        The same buffer is named once per MiB of the range: each part overwrites the last, as
        only the page cache is wanted, and the thread holds 1 MiB however long the chunk is.
        """
        if self._scratch is None:
            self._scratch = bytearray(READ_BUFFER_BYTES)
        whole = self._scratch
        while start < end:
            parts, rest = divmod(end - start, READ_BUFFER_BYTES)
            bufs: list[bytearray | memoryview] = [whole] * parts
            if rest:
                bufs.append(memoryview(whole)[:rest])
            n = os.preadv(mf.fd, bufs, start)
            if n <= 0:  # past the file's end: nothing left to warm
                return
            start += n

    def _run(self) -> None:
        try:
            self._fill_ahead()
        except Exception:  # a fault of the warmer's own: the writer goes on without it
            log.exception("the CommitLog warmer stopped; the writer allocates its own pages")
        finally:
            # However the thread ends, a writer waiting for a fill in flight must not wait on:
            # `make_way` hands every file back to its writer once `_stopping` is set.
            with self._cond:
                self._stopping = True
                self._filling_to = self._warmed
                self._cond.notify_all()

    def _fill_ahead(self) -> None:
        while True:
            with self._cond:
                job = None
                while not self._stopping and (job := self._next_fill()) is None:
                    self._cond.wait()
                if job is None:
                    return
            mf, start, end = job
            try:
                self._fill(mf, start, end)
            except OSError as exc:
                how = "zero-filling" if self.zero_fill else "reading ahead"
                log.warning("%s: %s at %d failed: %s; not warming it", mf.path, how, start, exc)
                with self._cond:
                    self._filling_to = self._warmed
                    self._failed = mf
                    self._file = None
                    self._cond.notify_all()
                continue
            with self._cond:
                self._warmed = end
                self.filled_bytes += end - start
                self._cond.notify_all()
