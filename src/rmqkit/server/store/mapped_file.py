"""Fixed-size memory-mapped files named by their start offset, and ordered queues of them.

RocketMQ's `MappedFile` and `MappedFileQueue`: the CommitLog and every ConsumeQueue are a directory
of same-sized files whose names are the 20-digit offset of their first byte, so the file holding any
offset is found by arithmetic. Files are created sparse (`ftruncate`) and mapped whole.

A write through a mapping into a page the file system cannot find room for does not fail: the
kernel kills the process with SIGBUS. So every writer first `reserve`s the blocks it is about to
write (`posix_fallocate`, a window at a time), which fails with ENOSPC as a `DiskFullError`
instead. A call takes about 2 us per 256 KiB on an idle ext4, but can wait a millisecond behind
the journal or a zero-fill in flight, so the CommitLog's writer leaves it to the warmer.
"""

from __future__ import annotations

import errno
import logging
import mmap
import os
import time
from pathlib import Path
from typing import ClassVar, Protocol

from rmqkit.errors import DiskFullError, StoreError

log = logging.getLogger("rmqkit.store")

NAME_DIGITS = 20
PAGE = mmap.PAGESIZE
_LINUX_MADV_POPULATE_WRITE = 23
_MADV_POPULATE_WRITE: int = getattr(
    mmap, "MADV_POPULATE_WRITE", _LINUX_MADV_POPULATE_WRITE if os.uname().sysname == "Linux" else 0
)
"""Linux 5.14+: fault pages in writable, many per call (Python 3.11 lacks the constant)."""
PREFAULT_BYTES = 256 * 1024
"""How far ahead of the writer `prefault` maps pages in."""
RESERVE_BYTES = PREFAULT_BYTES
"""How far past what it needs `reserve` allocates by default: one call per window."""
WRITER_RESERVE_BYTES = 4 << 20
"""How far past the writer `advance` allocates where no warmer does: a call can wait about a
millisecond for the file system's journal, so one per 4 MiB (about 3,500 1 KiB records)."""
_NO_ROOM = frozenset({errno.ENOSPC, errno.EDQUOT})


class Warmer(Protocol):
    """What a file's writer asks of the thread that warms the file ahead of it (`warm.py`)."""

    def make_way(self, mf: MappedFile, pos: int, end: int) -> tuple[int, int, int]:
        """Before the writer writes `pos` to `end`: returns how far it may write, where to call
        again, and how far the file's blocks are allocated (0: not known)."""

    def release(self, mf: MappedFile) -> None:
        """No more filling in `mf`; returns once no fill is in flight there."""


def file_name(offset: int) -> str:
    """`00000000001073741824`: the name of the file whose first byte is at `offset`."""
    return f"{offset:0{NAME_DIGITS}d}"


def mark_synced(targets: list[tuple[MappedFile, int]]) -> None:
    """After a sync of `targets`: each file is on disk up to the position read before the sync.

    On the event loop only: `flushed_pos` is never written from another thread.
    """
    for mf, pos in targets:
        if pos > mf.flushed_pos and mf.sync_lost is None:
            mf.flushed_pos = pos


REDIRTY_CHUNK_BYTES = 1 << 20
"""`MappedFile.redirty` copies and writes back this much at a time."""


class MappedFile:
    """One file mapped whole; `write_pos` is how far it is filled, `flushed_pos` how far synced."""

    can_prefault: ClassVar[bool] = _MADV_POPULATE_WRITE != 0
    """False once the kernel has refused MADV_POPULATE_WRITE (before Linux 5.14)."""
    can_reserve: ClassVar[bool] = hasattr(os, "posix_fallocate")
    """False where `posix_fallocate` is missing or refused for another reason than room."""

    __slots__ = (
        "ahead",
        "fd",
        "flushed_pos",
        "last_write_s",
        "mapped_writable",
        "mm",
        "path",
        "reserved",
        "size",
        "start",
        "sync_lost",
        "warmer",
        "write_pos",
    )

    def __init__(
        self, path: Path, start: int, size: int, *, create: bool, mapped_writable: bool = True
    ) -> None:
        self.path = path
        self.start = start
        self.size = size
        flags = os.O_RDWR | (os.O_CREAT if create else 0)
        self.fd = os.open(path, flags, 0o644)
        try:
            actual = os.fstat(self.fd).st_size
            if actual == 0:
                # New, or left empty by a process killed between creating and sizing it: nothing
                # was ever written to it, so sizing it now gives the same file.
                os.ftruncate(self.fd, size)
            elif actual != size:
                raise StoreError(
                    f"{path} is {actual} bytes; every file in its folder must be {size}"
                )
            self.mapped_writable = mapped_writable
            """False: mapped read-only, written by `write` alone (see `MappedFileQueue`)."""
            self.mm = self._map()
            if not mapped_writable and hasattr(os, "posix_fadvise"):
                # No readahead through this descriptor. Read ahead (by the warmer), the file
                # would sit in the page cache as large folios, and ext4 walks every block of a
                # folio on each small `write` into it: measured in the broker, SYNC_FLUSH
                # pipelined sends, kernel time 0.37 of a core with readahead, 0.12 without.
                os.posix_fadvise(self.fd, 0, 0, os.POSIX_FADV_RANDOM)
        except BaseException:
            os.close(self.fd)
            raise
        self.write_pos = 0
        self.flushed_pos = 0
        self.ahead = 0
        """The writer calls `advance` before it writes past this (never past `reserved`)."""
        self.reserved = 0
        """The blocks from where the writer began up to here are allocated (see `reserve`)."""
        self.sync_lost: str | None = None
        """Why bytes past `flushed_pos` may never reach the disk (a sync failed and they could
        not be written again, see `redirty`); `flushed_pos` stays where it is from then on."""
        self.warmer: Warmer | None = None
        """Zero-fills this file ahead of the writer (see `advance`)."""
        self.last_write_s = os.fstat(self.fd).st_mtime

    @property
    def end(self) -> int:
        """The offset one past this file's last byte."""
        return self.start + self.size

    @property
    def full(self) -> bool:
        return self.write_pos >= self.size

    def view(self, pos: int, length: int) -> memoryview:
        """`length` bytes at in-file position `pos`, without copying."""
        return memoryview(self.mm)[pos : pos + length]

    def advance(self, pos: int, end: int) -> None:
        """Make way for the writer, about to write bytes `pos` to `end`, past `ahead`.

        A writer that touches a new page of a shared file mapping takes a page fault for it. On
        a VM whose host hands out memory on first touch, that costs about 12 us a page: 3 us of
        a 1 KiB record's append. With a warmer (`CommitLogWarmer`), a thread has zero-filled or
        read the file ahead of the writer, so the pages are in the page cache when it gets there
        and the cost fell on the other core; the warmer also keeps the writer out of a fill in
        flight. Without one, `prefault` maps the next pages in with one call.
        """
        if self.warmer is None:
            if end > self.reserved:
                self.reserve(pos, end, WRITER_RESERVE_BYTES)
            self.prefault(pos, self.size)
        else:
            # The warmer allocates what it fills and what the writer takes past it: no
            # `posix_fallocate` here, which would wait for a fill in flight.
            warmed, call_at, allocated = self.warmer.make_way(self, pos, end)
            if allocated > self.reserved:
                self.reserved = allocated
            if end > self.reserved:  # the warmer stopped or failed
                self.reserve(pos, end, WRITER_RESERVE_BYTES)
            self.prefault(pos, warmed)
            if call_at < self.ahead:
                self.ahead = call_at
        if self.ahead > self.reserved:
            self.ahead = self.reserved

    def reserve(self, pos: int, end: int, window: int = RESERVE_BYTES) -> None:
        """Allocate the blocks of bytes `pos` to `end`, and up to `window` past `pos`.

        A sequential writer calls this before it writes past `reserved`; a random one (hash
        slots, a timer wheel) for the whole range it is about to write, with `window` 0.

        Raises:
            DiskFullError: the file system has no room (or the user's quota is used up).
                Nothing was written; `reserved` is unchanged.
        """
        stop = min(self.size, max(end, pos + window))
        start = pos - pos % PAGE
        if MappedFile.can_reserve and stop > start:
            try:
                os.posix_fallocate(self.fd, start, stop - start)
            except OSError as exc:
                if exc.errno in _NO_ROOM:
                    raise DiskFullError(
                        f"no disk space for {self.path} (bytes {start} to {stop}): {exc.strerror}"
                    ) from exc
                # EOPNOTSUPP, EINVAL: a file system that cannot; its writers go unguarded.
                MappedFile.can_reserve = False
                log.warning(
                    "%s: posix_fallocate refused (%s); a full disk will stop the broker with "
                    "SIGBUS instead of refusing writes",
                    self.path,
                    exc,
                )
        if stop > self.reserved:
            self.reserved = stop

    def prefault(self, pos: int, limit: int) -> None:
        """Map in the pages from `pos` to PREFAULT_BYTES past it (not past `limit`), in one call.

        `MADV_POPULATE_WRITE` does the work of a window of page faults in one call, for about a
        quarter of their cost (much less when a warmer has put the pages in the page cache).
        Where the kernel does not have it, the writer takes its faults as before.
        """
        if not MappedFile.can_prefault or not self.mapped_writable:
            self.ahead = limit  # a file written by `write` takes no faults
            return
        start = pos - pos % PAGE
        end = min(limit, start + PREFAULT_BYTES)
        self.ahead = end
        if end > start:
            try:
                self.mm.madvise(_MADV_POPULATE_WRITE, start, end - start)
            except OSError as exc:
                # EINVAL: a kernel before 5.14. Anything else (no memory, no disk space) shows
                # again, with its own error, when the writer touches the page.
                if exc.errno == errno.EINVAL:
                    MappedFile.can_prefault = False
                log.debug("%s: prefault at %d: %s", self.path, start, exc)

    def write(self, pos: int, data: bytes | bytearray | memoryview) -> None:
        """Copy `data` into the file at `pos`: into the mapping where it is writable, else with
        `pwrite` (into the page cache, which the mapping shows at once). The caller has
        `reserve`d the blocks, so no room is rare here.

        Raises:
            DiskFullError: the file system had no room; part of `data` may be written.
            StoreError: any other failure (EIO), naming the file and position.
        """
        n = len(data)
        if self.mapped_writable:
            self.mm[pos : pos + n] = data
            return
        try:
            done = os.pwrite(self.fd, data, pos)
            while done < n:
                done += os.pwrite(self.fd, memoryview(data)[done:], pos + done)
        except OSError as exc:
            if exc.errno in _NO_ROOM:
                raise DiskFullError(
                    f"no disk space for {self.path} (bytes {pos} to {pos + n}): {exc.strerror}"
                ) from exc
            raise StoreError(f"cannot write {self.path} at {pos}: {exc.strerror}") from exc

    def mark_written(self, pos: int) -> None:
        self.write_pos = pos
        self.last_write_s = time.time()

    def sync(self) -> None:
        """fdatasync the file: everything written through the mapping is on disk after this."""
        os.fdatasync(self.fd)

    def redirty(self, start: int, end: int) -> None:
        """Write bytes `start` to `end` again, unchanged, so that the next sync writes them.

        When fdatasync fails, Linux marks the pages it could not write clean and reports the
        error once: the next fdatasync succeeds without them, and their bytes live on in the
        page cache alone, until the machine goes down. After a failed sync its range is
        written again here, on the event loop (the only writer), a chunk at a time.

        Raises:
            StoreError: the bytes could not be written (`sync_lost` is for the caller to set).
        """
        with memoryview(self.mm) as view:
            pos = start
            while pos < end:
                stop = min(end, pos + REDIRTY_CHUNK_BYTES)
                self.write(pos, bytes(view[pos:stop]))
                pos = stop

    def zero_from(self, pos: int) -> None:
        """Make every byte from `pos` on read as zero, by shrinking and re-growing the file.

        Leaves no stale record behind a truncation point for a later recovery scan to find, and
        keeps the file sparse. The mapping is re-made because a shrink invalidates it.
        """
        self._close_map()
        os.ftruncate(self.fd, pos)
        os.ftruncate(self.fd, self.size)
        os.fdatasync(self.fd)
        self.mm = self._map()
        self.write_pos = min(self.write_pos, pos)
        self.flushed_pos = min(self.flushed_pos, pos)
        self.reserved = min(self.reserved, pos)  # the shrink gave the blocks back
        self.ahead = min(self.ahead, pos)

    def _map(self) -> mmap.mmap:
        prot = mmap.PROT_READ | (mmap.PROT_WRITE if self.mapped_writable else 0)
        return mmap.mmap(self.fd, self.size, mmap.MAP_SHARED, prot)

    def _close_map(self) -> None:
        try:
            self.mm.close()
        except BufferError:
            # A reader still holds a view (a pull response on its way out). The mapping stays
            # valid until the last view is released; the garbage collector unmaps it then.
            log.debug("%s: mapping still exported; left to the garbage collector", self.path)

    def close(self) -> None:
        if self.warmer is not None:  # a zero-fill in flight would write to a closed descriptor
            self.warmer.release(self)
        self._close_map()
        try:
            os.close(self.fd)
        except OSError:
            pass

    def destroy(self) -> None:
        """Close and delete the file."""
        self.close()
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass


class MappedFileQueue:
    """The files of one directory in offset order, each `file_size` bytes."""

    def __init__(self, directory: Path, file_size: int, *, mapped_writable: bool = True) -> None:
        self.dir = directory
        self.file_size = file_size
        self.mapped_writable = mapped_writable
        """False: the files are mapped read-only and written with `MappedFile.write` (the
        CommitLog; see `commit_log.py` for why)."""
        self.sync_lost: str | None = None
        """Set when bytes of a file could not be written again after a failed sync, or when
        syncs kept failing (see `flush.sync_failed`): the queue's owner refuses writes from
        then on."""
        self.failed_syncs = 0
        """Syncs that failed since the last one that succeeded (see `flush.sync_failed`)."""
        self.files: list[MappedFile] = []
        self.warmer: Warmer | None = None
        """Given to each file `create` adds (the CommitLog's, while a warmer runs)."""

    def load(self) -> None:
        """Map the files already in the directory; refuse gaps and wrong sizes."""
        self.dir.mkdir(parents=True, exist_ok=True)
        names = sorted(
            p
            for p in self.dir.iterdir()
            if p.is_file() and p.name.isdigit() and len(p.name) == NAME_DIGITS
        )
        for p in names:
            start = int(p.name)
            if self.files and start != self.files[-1].end:
                raise StoreError(
                    f"{p} starts at {start} but the file before it ends at {self.files[-1].end}"
                )
            if start % self.file_size:
                raise StoreError(
                    f"{p} does not start at a multiple of the file size {self.file_size}"
                )
            if p == names[-1] and p.stat().st_size < self.file_size:
                # A process killed between creating the last file and sizing it, or inside
                # `zero_from` between its shrink and its regrow, leaves it short; the bytes it
                # lacks were never written, or were being zeroed anyway.
                log.warning("%s is short (killed while creating or cutting it): regrown", p)
                os.truncate(p, self.file_size)
            mf = MappedFile(
                p, start, self.file_size, create=False, mapped_writable=self.mapped_writable
            )
            mf.write_pos = mf.flushed_pos = self.file_size
            self.files.append(mf)

    @property
    def min_offset(self) -> int:
        return self.files[0].start if self.files else 0

    @property
    def max_offset(self) -> int:
        """One past the last written byte."""
        if not self.files:
            return 0
        last = self.files[-1]
        return last.start + last.write_pos

    @property
    def flushed_offset(self) -> int:
        for mf in reversed(self.files):
            if mf.flushed_pos:
                return mf.start + mf.flushed_pos
        return self.min_offset

    def last(self) -> MappedFile | None:
        return self.files[-1] if self.files else None

    def create(self, start: int) -> MappedFile:
        """Add the file that starts at `start` (the end of the current last file)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        mf = MappedFile(
            self.dir / file_name(start),
            start,
            self.file_size,
            create=True,
            mapped_writable=self.mapped_writable,
        )
        mf.warmer = self.warmer
        self.files.append(mf)
        return mf

    def find(self, offset: int) -> MappedFile | None:
        """The file holding `offset`, or None when it was deleted or never written."""
        if not self.files:
            return None
        i = (offset - self.files[0].start) // self.file_size
        if 0 <= i < len(self.files):
            return self.files[i]
        return None

    def truncate(self, offset: int) -> None:
        """Forget everything from `offset` on: later files are deleted, the tail zeroed."""
        keep: list[MappedFile] = []
        for mf in self.files:
            if mf.end <= offset:
                keep.append(mf)
            elif mf.start <= offset:
                mf.zero_from(offset - mf.start)
                mf.write_pos = mf.flushed_pos = offset - mf.start
                keep.append(mf)
            else:
                log.warning("truncating: deleting %s", mf.path)
                mf.destroy()
        self.files = keep

    def delete_first(self, count: int = 1) -> list[MappedFile]:
        """Delete up to `count` oldest files: never the last one, never one not fully flushed.

        A file still being written or synced may have a worker thread holding its descriptor;
        closing it under that thread could sync a reused descriptor instead.
        """
        gone: list[MappedFile] = []
        while len(gone) < count and len(self.files) > 1:
            mf = self.files[0]
            if mf.flushed_pos < mf.write_pos or mf.write_pos < mf.size:
                break
            gone.append(self.files.pop(0))
            mf.destroy()
        return gone

    def dirty_files(self) -> list[MappedFile]:
        return [mf for mf in self.files if mf.flushed_pos < mf.write_pos]

    def dirty_targets(self) -> list[tuple[MappedFile, int]]:
        """The dirty files, each with how far it is written now: what a sync started next covers.

        Not the files whose unsynced bytes were given up (`sync_lost`): no sync counts for them.
        """
        return [
            (mf, mf.write_pos)
            for mf in self.files
            if mf.flushed_pos < mf.write_pos and mf.sync_lost is None
        ]

    def close(self) -> None:
        for mf in self.files:
            mf.close()
        self.files = []
