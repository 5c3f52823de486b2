"""IndexFile: a hash index from message keys to CommitLog offsets, for query by key.

RocketMQ's `IndexFile` layout. Big-endian, one fixed-size file:

    header (40 bytes)
         0    8  begin_timestamp       store time of the first indexed message (ms)
         8    8  end_timestamp         store time of the last one
        16    8  begin_phy_offset      CommitLog offset of the first indexed message
        24    8  end_phy_offset        CommitLog offset of the last one
        32    4  hash_slot_count       slots in use
        36    4  index_count           next entry number (entries are numbered from 1)
    slots: max_hash_slot_num x 4 bytes, each the number of the newest entry in that slot (0 = empty)
    entries: max_index_num x 20 bytes
         0    4  key_hash
         4    8  phy_offset
        12    4  time_diff             seconds since begin_timestamp
        16    4  prev_index            the entry this one pushed out of its slot (a chain)

Keys are `topic#KEY` for every KEYS token and `topic#UNIQ_KEY`. rmqkit hashes them with
CRC-32 (masked to 31 bits) where Java uses `String.hashCode`: the layout is RocketMQ's, but an
index file written by a Java broker is not read by rmqkit (queries would miss, not misread).

The hash slots of the file being written live in memory (an `array` of native-order ints), not
in the mapping: a key's slot is a random place in 20 MB (the default 5,000,000 slots), so in the
mapping nearly every page of them was dirty again at each logics flush, and written back. The
table goes into the file when the file is sealed (full) and when the store stops
(`store_slots`). Until then the file's slots are stale, which is safe: after a crash `restore`
rebuilds every slot from the entries the checkpoint counted, and only a clean stop, which
stores the table first, skips that.
"""

from __future__ import annotations

import array
import contextlib
import mmap
import struct
import sys
from pathlib import Path

from zlib_ng.zlib_ng import crc32

from rmqkit.errors import DiskFullError
from rmqkit.server.store.checkpoint import IndexHeader
from rmqkit.server.store.mapped_file import MappedFile

HEADER = struct.Struct(">qqqqii")  # 40 bytes
SLOT = struct.Struct(">i")
ENTRY = struct.Struct(">iqii")  # 20 bytes
_ENTRY_HASH = struct.Struct(">i16x")  # the key hash of one entry, skipping the rest
_SLOTS_AT = HEADER.size
_SLOT_BYTES = SLOT.size
_ENTRY_BYTES = ENTRY.size


Entry = tuple[int, int, int]
"""What `IndexFile.put_entries` takes of one key: its hash, CommitLog offset and store time."""


HASH_MASK = 0x7FFFFFFF
"""An entry stores the key's CRC-32 with the sign bit cleared."""

_BIG_ENDIAN_HOST = sys.byteorder == "big"


def write_slots(mm: mmap.mmap, at: int, slots: array.array[int]) -> None:
    """Copy `slots`, already big-endian, into a file's slot area at `at`."""
    mm[at : at + len(slots) * _SLOT_BYTES] = slots


def key_hash(key: str) -> int:
    """The 31-bit hash an index entry stores for `key`."""
    return crc32(key.encode("utf-8")) & HASH_MASK


class IndexFile:
    """One index file; `put` adds a key, `lookup` walks a key's chain newest first."""

    def __init__(self, path: Path, slots: int, entries: int, *, create: bool) -> None:
        self.slots = slots
        self.max_entries = entries
        size = HEADER.size + slots * SLOT.size + entries * ENTRY.size
        self.file = MappedFile(path, 0, size, create=create)
        try:
            self.file.reserve(0, HEADER.size, 0)  # the header is written with every run
        except DiskFullError:
            if create:
                self.file.destroy()
            else:
                self.file.close()
            raise
        self.entries_at = HEADER.size + slots * SLOT.size
        self.sealed = False
        """No more writes (full, or not the last file)."""
        self._table: array.array[int] | None = None
        """The hash slots while this file is written (see the module docstring); None when
        the file's own slots are current."""
        self.begin_timestamp = self.end_timestamp = 0
        self.begin_phy_offset = self.end_phy_offset = 0
        self.hash_slot_count = self.index_count = 0
        self._set_header(HEADER.unpack_from(self.file.mm, 0))
        if self.index_count <= 0:
            self.index_count = 1
            self.end_phy_offset = -1
            self.begin_phy_offset = -1
            self._write_header()

    @property
    def path(self) -> Path:
        return self.file.path

    @property
    def full(self) -> bool:
        return self.sealed or self.index_count >= self.max_entries

    @property
    def count(self) -> int:
        return self.index_count - 1

    @property
    def header(self) -> IndexHeader:
        """The header fields as they stand in memory (and in the file, after each `put_entries`)."""
        return (
            self.begin_timestamp,
            self.end_timestamp,
            self.begin_phy_offset,
            self.end_phy_offset,
            self.hash_slot_count,
            self.index_count,
        )

    def _set_header(self, header: IndexHeader) -> None:
        (
            self.begin_timestamp,
            self.end_timestamp,
            self.begin_phy_offset,
            self.end_phy_offset,
            self.hash_slot_count,
            self.index_count,
        ) = header

    def _write_header(self) -> None:
        # Once per dispatch run: the fields are passed one by one, not through `header`.
        HEADER.pack_into(
            self.file.mm,
            0,
            self.begin_timestamp,
            self.end_timestamp,
            self.begin_phy_offset,
            self.end_phy_offset,
            self.hash_slot_count,
            self.index_count,
        )

    def put(self, key: str, phy_offset: int, store_timestamp: int) -> bool:
        """Add one key; False when the file is full."""
        return self.put_entries([(key_hash(key), phy_offset, store_timestamp)]) == 1

    def put_entries(self, entries: list[Entry], start: int = 0) -> int:
        """Add `entries[start:]` in order, as many as fit; returns where the rest begins.

        Entries go into the mapping, their hash slots into the table in memory, and the header
        once, after the last: a dispatch run of many records costs one header write. The file
        is full when the result is below `len(entries)`.
        """
        n = self.index_count
        room = self.max_entries - n
        if self.sealed or room <= 0 or start >= len(entries):
            return start
        stop = min(len(entries), start + room)
        entry_at = self.entries_at + (n - 1) * _ENTRY_BYTES
        end_at = entry_at + (stop - start) * _ENTRY_BYTES
        if end_at > self.file.reserved:
            self.file.reserve(entry_at, end_at)  # raises DiskFullError with nothing written
        if n == 1:
            _, self.begin_phy_offset, self.begin_timestamp = entries[start]
        begin = self.begin_timestamp
        mm = self.file.mm
        slots = self.slots
        table = self._table if self._table is not None else self._load_table()
        pack_entry = ENTRY.pack_into
        new_slots = 0
        for i in range(start, stop):
            h, phy, ts = entries[i]
            diff = (ts - begin) // 1000
            if diff < 0:
                diff = 0
            elif diff > 0x7FFFFFFF:
                diff = 0x7FFFFFFF
            s = h % slots
            prev = table[s]
            if prev <= 0 or prev >= n:
                prev = 0
                new_slots += 1
            pack_entry(mm, entry_at, h, phy, diff, prev)
            table[s] = n
            entry_at += _ENTRY_BYTES
            n += 1
        self.hash_slot_count += new_slots
        self.index_count = n
        _, self.end_phy_offset, self.end_timestamp = entries[stop - 1]
        self._write_header()
        return stop

    def _load_table(self) -> array.array[int]:
        """The file's slots as native ints in memory (once per file written to)."""
        table = array.array("i")
        with memoryview(self.file.mm) as view, view[_SLOTS_AT : self.entries_at] as slots:
            table.frombytes(slots)  # one allocation, no copy in between (20 MB by default)
        if not _BIG_ENDIAN_HOST:
            table.byteswap()  # the file is big-endian
        self._table = table
        return table

    def store_slots(self) -> None:
        """Write the hash slots kept in memory into the file, and free them.

        A no-op when the file's slots are current. The caller syncs the file afterwards; a
        later `put_entries` loads them again.
        """
        table = self._table
        if table is None:
            return
        self.file.reserve(_SLOTS_AT, self.entries_at, 0)  # random pages: all of them, first
        if not _BIG_ENDIAN_HOST:
            table.byteswap()
        write_slots(self.file.mm, _SLOTS_AT, table)
        self._table = None

    def seal(self) -> None:
        """No more entries: store the slots."""
        self.store_slots()
        self.sealed = True

    def lookup(self, key: str, limit: int, begin_ms: int, end_ms: int) -> list[int]:
        """Physical offsets of entries with `key`'s hash stored within [begin_ms, end_ms]."""
        mm = self.file.mm
        h = key_hash(key)
        if self._table is not None:
            n = self._table[h % self.slots]
        else:
            (n,) = SLOT.unpack_from(mm, HEADER.size + (h % self.slots) * SLOT.size)
        out: list[int] = []
        seen = 0
        while 0 < n < self.index_count and len(out) < limit and seen < self.max_entries:
            eh, phy, diff, prev = ENTRY.unpack_from(mm, self.entries_at + (n - 1) * ENTRY.size)
            t = self.begin_timestamp + diff * 1000
            if eh == h and begin_ms <= t <= end_ms + 999:
                out.append(phy)
            if t < begin_ms or prev == n:
                break
            n = prev
            seen += 1
        return out

    def overlaps(self, begin_ms: int, end_ms: int) -> bool:
        if self.count == 0:
            return False
        return self.begin_timestamp <= end_ms + 999 and self.end_timestamp >= begin_ms - 999

    def sync(self) -> None:
        self.file.sync()

    def close(self) -> None:
        # A full disk here is logged by the store's stop, which then leaves the abort file:
        # the next start rebuilds the slots from the entries.
        with contextlib.suppress(DiskFullError):
            self.store_slots()
        self.file.close()

    def destroy(self) -> None:
        self.file.destroy()

    def restore(self, header: IndexHeader) -> int:
        """Go back to `header`, a state recorded earlier; returns how many entries were dropped.

        After a crash, only the entries `header` counts are trusted: each was written whole and
        synced before it was recorded, and entries never change. What came later may be torn:
        `struct.pack_into` zero-fills its target before writing the fields, so a kill inside a
        header or hash-slot write leaves zeros or half a number there. The later entries are
        zeroed, the header is rewritten, and every hash slot is rebuilt from the kept entries
        (one pass over them: 2,000,000 entries took 0.24 s on 2 cores, so a full default file of
        20,000,000 about 2.4 s).
        """
        count = header[5]
        if not 1 <= count <= self.max_entries:
            raise ValueError(f"{self.path}: recorded entry count {count} is out of range")
        mm = self.file.mm
        kept = count - 1
        n = count
        while n <= self.max_entries and any(
            mm[self.entries_at + (n - 1) * _ENTRY_BYTES : self.entries_at + n * _ENTRY_BYTES]
        ):
            n += 1
        dropped = n - count
        if dropped:
            mm[self.entries_at + kept * _ENTRY_BYTES : self.entries_at + (n - 1) * _ENTRY_BYTES] = (
                bytes(dropped * _ENTRY_BYTES)
            )
        slots = array.array("i", [0]) * self.slots
        n_slots = self.slots
        with memoryview(mm) as view:
            kept_entries = view[self.entries_at : self.entries_at + kept * _ENTRY_BYTES]
            for i, (h,) in enumerate(_ENTRY_HASH.iter_unpack(kept_entries), 1):
                slots[h % n_slots] = i
            kept_entries.release()
        if not _BIG_ENDIAN_HOST:
            slots.byteswap()  # the file is big-endian
        self.file.reserve(_SLOTS_AT, self.entries_at, 0)
        write_slots(mm, _SLOTS_AT, slots)
        self._table = None  # the file's slots are current
        self._set_header(header)
        self._write_header()
        return dropped
