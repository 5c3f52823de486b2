"""The timer's pending index on disk: RocketMQ 5's `TimerLog` and `TimerWheel` files.

The TimerLog (`<storePathRootDir>/timerlog/`) is an append-only queue of fixed-size units, one per
pending timer message. Units of one slot form a linked list backwards: each holds the position of
the slot's previous unit. The wheel (`<storePathRootDir>/timerwheel`) is one file of fixed-size
slots, indexed by `slot_ms // precision % slot_count`; a slot holds its time (to tell one lap of
the wheel from the next), the positions of its first and last unit and how many there are. So the
broker keeps no memory per pending message: a slot's units are read only when the slot falls due.

TimerLog unit, 40 bytes, big-endian::

    prev_pos(8)   position of the previous unit of the same slot, -1 for the first
    slot_ms(8)    the slot this unit is linked into (its start, epoch ms)
    queue_offset(8) phys_offset(8) size(4)   the message's timer-queue entry
    magic(4)      UNIT_MAGIC

Wheel slot, 32 bytes::

    time_ms(8) first_pos(8) last_pos(8) num(4) reserved(4)

A unit's `prev_pos` always points backwards, so any prefix of the log is a consistent set of
chains: after a crash the log is cut back to the end named by the last checkpoint, and the wheel
is rebuilt from what is left.
"""

from __future__ import annotations

import logging
import os
import shutil
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from rmqkit.errors import StoreError
from rmqkit.server.store.mapped_file import PAGE, MappedFile, MappedFileQueue

log = logging.getLogger("rmqkit.store.timer")

UNIT = struct.Struct(">qqqqiI")  # 40 bytes
UNIT_MAGIC = 0x54494D52  # "TIMR"
SLOT = struct.Struct(">qqqii")  # 32 bytes
UNITS_PER_FILE = 256 * 1024
"""TimerLog file size in units (10 MiB files): a file is deleted once all its slots have passed."""

Entry = tuple[int, int, int]
"""(ConsumeQueue offset, CommitLog offset, size) of one pending timer message."""


@dataclass(frozen=True, slots=True)
class Unit:
    """One decoded TimerLog unit."""

    pos: int
    prev_pos: int
    slot_ms: int
    entry: Entry


@dataclass(frozen=True, slots=True)
class Slot:
    """One decoded wheel slot; `num == 0` (or another lap's `time_ms`) means empty."""

    time_ms: int
    first_pos: int
    last_pos: int
    num: int


EMPTY_SLOT = Slot(0, -1, -1, 0)


class TimerLog:
    """The append-only unit log, in `MappedFileQueue` files named by their first byte."""

    def __init__(self, directory: Path, units_per_file: int = UNITS_PER_FILE) -> None:
        self.files = MappedFileQueue(directory, units_per_file * UNIT.size)
        self._max_slot: dict[int, int] = {}
        """File start -> the latest slot of its units, for files no longer written."""
        self._tail_max_slot: int | None = 0

    def load(self, end: int) -> None:
        """Map the files and cut everything from `end` on (bytes written after the checkpoint)."""
        self.files.load()
        if self.files.files and end < self.files.max_offset:
            self.files.truncate(max(end, self.files.min_offset))
        last = self.files.last()
        if last is not None:
            last.write_pos = last.flushed_pos = min(last.size, max(0, end - last.start))
        self._tail_max_slot = None  # the last file's slots are not known: scanned if needed

    @property
    def min_offset(self) -> int:
        return self.files.min_offset

    @property
    def end(self) -> int:
        """One past the last unit written."""
        return self.files.max_offset

    def append(self, prev_pos: int, slot_ms: int, entry: Entry) -> int:
        """Write one unit at the end; returns its position."""
        mf = self.files.last()
        if mf is None or mf.full:
            if mf is not None and self._tail_max_slot is not None:
                self._max_slot[mf.start] = self._tail_max_slot
            mf = self.files.create(mf.end if mf is not None else 0)
            self._tail_max_slot = 0
        pos = mf.write_pos
        if pos + UNIT.size > mf.reserved:
            mf.reserve(pos, pos + UNIT.size)  # DiskFullError, not SIGBUS, on a full disk
        UNIT.pack_into(mf.mm, pos, prev_pos, slot_ms, entry[0], entry[1], entry[2], UNIT_MAGIC)
        mf.mark_written(pos + UNIT.size)
        if self._tail_max_slot is not None:
            self._tail_max_slot = max(self._tail_max_slot, slot_ms)
        return mf.start + pos

    def read(self, pos: int) -> Unit | None:
        """The unit at `pos`, None when it is gone or not a unit."""
        mf = self.files.find(pos)
        if mf is None or pos - mf.start + UNIT.size > mf.write_pos:
            return None
        prev, slot_ms, qoff, phys, size, magic = UNIT.unpack_from(mf.mm, pos - mf.start)
        if magic != UNIT_MAGIC:
            return None
        return Unit(pos, prev, slot_ms, (qoff, phys, size))

    def scan(self, end: int) -> Iterator[Unit]:
        """Every unit from the first file to `end`, in log order (bad units are skipped)."""
        for mf in list(self.files.files):
            stop = min(mf.write_pos, end - mf.start)
            if stop <= 0:
                break
            view = memoryview(mf.mm)[: stop - stop % UNIT.size]
            try:
                for i, (prev, slot_ms, qoff, phys, size, magic) in enumerate(
                    UNIT.iter_unpack(view)
                ):
                    if magic == UNIT_MAGIC:
                        yield Unit(mf.start + i * UNIT.size, prev, slot_ms, (qoff, phys, size))
            finally:
                view.release()

    def chain(self, last_pos: int, limit: int) -> list[Entry]:
        """The entries of a slot's list ending at `last_pos`, oldest first."""
        out: list[Entry] = []
        pos = last_pos
        while pos >= 0 and len(out) < limit:
            unit = self.read(pos)
            if unit is None:
                log.error("timer log unit at %d is unreadable; the rest of its slot is lost", pos)
                break
            out.append(unit.entry)
            pos = unit.prev_pos
        out.reverse()
        return out

    def delete_passed(self, before_ms: int) -> int:
        """Delete leading files whose every unit belongs to a slot before `before_ms`."""
        gone = 0
        while len(self.files.files) > 1:
            first = self.files.files[0]
            top = self._max_slot.get(first.start)
            if top is None:
                top = max((u.slot_ms for u in self.scan(first.end)
                           if u.pos < first.end), default=0)  # fmt: skip
                self._max_slot[first.start] = top
            if top >= before_ms:
                break
            first.flushed_pos = first.write_pos = first.size
            self.files.delete_first(1)
            self._max_slot.pop(first.start, None)
            gone += 1
        return gone

    def flush(self) -> None:
        for mf in self.files.dirty_files():
            mf.mm.flush()
            mf.flushed_pos = mf.write_pos

    def close(self) -> None:
        self.files.close()


class TimerWheelFile:
    """The wheel: `slot_count` slots of SLOT bytes in one sparse, mapped file."""

    def __init__(self, path: Path, precision_ms: int, slot_count: int) -> None:
        self.path = path
        self.precision_ms = precision_ms
        self.slot_count = slot_count
        self.file: MappedFile | None = None
        self._reserved = bytearray()
        """1 for each page of the file `put` has allocated (the file stays sparse)."""

    def open(self, *, fresh: bool) -> bool:
        """Map the file; with `fresh`, or when its size is not this wheel's, start it empty.

        Returns whether the old contents were kept.
        """
        size = self.slot_count * SLOT.size
        self.path.parent.mkdir(parents=True, exist_ok=True)
        kept = not fresh and self.path.exists() and self.path.stat().st_size == size
        if not kept:
            self.path.unlink(missing_ok=True)
        self.file = MappedFile(self.path, 0, size, create=True)
        self._reserved = bytearray(-(-size // PAGE))
        return kept

    def _mm(self) -> MappedFile:
        if self.file is None:
            raise StoreError("the timer wheel is not open")
        return self.file

    def index(self, slot_ms: int) -> int:
        return (slot_ms // self.precision_ms) % self.slot_count

    def get(self, slot_ms: int) -> Slot:
        """The slot for `slot_ms`: empty when it holds nothing or another lap's time."""
        t, first, last, num, _ = SLOT.unpack_from(self._mm().mm, self.index(slot_ms) * SLOT.size)
        return Slot(t, first, last, num) if t == slot_ms and num > 0 else EMPTY_SLOT

    def raw(self, slot_ms: int) -> Slot:
        """What the slot for `slot_ms` holds, whatever lap it is of."""
        t, first, last, num, _ = SLOT.unpack_from(self._mm().mm, self.index(slot_ms) * SLOT.size)
        return Slot(t, first, last, num)

    def put(self, slot: Slot) -> None:
        """Write `slot`; raises `DiskFullError` (nothing written) when its page finds no room."""
        mf = self._mm()
        at = self.index(slot.time_ms) * SLOT.size
        page = at // PAGE
        if not self._reserved[page]:
            mf.reserve(at, at + SLOT.size, 0)
            self._reserved[page] = 1
        SLOT.pack_into(mf.mm, at, slot.time_ms, slot.first_pos, slot.last_pos, slot.num, 0)

    def flush(self) -> None:
        if self.file is not None:
            self.file.mm.flush()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


def replace_dir(new: Path, old: Path) -> None:
    """Put directory `new` in the place of `old` (crash-safe: see `recover_dir`)."""
    aside = old.with_name(old.name + ".old")
    if old.exists():
        os.replace(old, aside)
    os.replace(new, old)
    shutil.rmtree(aside, ignore_errors=True)


def recover_dir(path: Path) -> None:
    """Finish or undo a `replace_dir` a crash interrupted."""
    aside = path.with_name(path.name + ".old")
    if aside.exists():
        if path.exists():
            shutil.rmtree(aside, ignore_errors=True)
        else:
            os.replace(aside, path)
    shutil.rmtree(path.with_name(path.name + ".new"), ignore_errors=True)
