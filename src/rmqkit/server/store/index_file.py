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
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

from rmqkit.server.store.mapped_file import MappedFile

HEADER = struct.Struct(">qqqqii")  # 40 bytes
SLOT = struct.Struct(">i")
ENTRY = struct.Struct(">iqii")  # 20 bytes
_END_TS_PHY = struct.Struct(">q")
_SLOTS_AT = HEADER.size
_SLOT_BYTES = SLOT.size
_ENTRY_BYTES = ENTRY.size


def key_hash(key: str) -> int:
    """The 31-bit hash an index entry stores for `key`."""
    return zlib.crc32(key.encode("utf-8")) & 0x7FFFFFFF


class IndexFile:
    """One index file; `put` adds a key, `lookup` walks a key's chain newest first."""

    def __init__(self, path: Path, slots: int, entries: int, *, create: bool) -> None:
        self.slots = slots
        self.max_entries = entries
        size = HEADER.size + slots * SLOT.size + entries * ENTRY.size
        self.file = MappedFile(path, 0, size, create=create)
        self.entries_at = HEADER.size + slots * SLOT.size
        self.sealed = False
        """No more writes (full, or cut by recovery)."""
        head: tuple[int, int, int, int, int, int] = HEADER.unpack_from(self.file.mm, 0)
        self.begin_timestamp: int = head[0]
        self.end_timestamp: int = head[1]
        self.begin_phy_offset: int = head[2]
        self.end_phy_offset: int = head[3]
        self.hash_slot_count: int = head[4]
        self.index_count: int = head[5]
        if self.index_count <= 0:
            self.index_count = 1
            self.end_phy_offset = -1
            self.begin_phy_offset = -1
            self._write_header()
        elif not create:
            self._drop_uncounted()

    @property
    def path(self) -> Path:
        return self.file.path

    @property
    def full(self) -> bool:
        return self.sealed or self.index_count >= self.max_entries

    @property
    def count(self) -> int:
        return self.index_count - 1

    def write_header(self) -> None:
        """Copy the header fields into the file (`put(..., header=False)` leaves that to later)."""
        self._write_header()

    def _write_header(self) -> None:
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

    def put(self, key: str, phy_offset: int, store_timestamp: int, *, header: bool = True) -> bool:
        """Add one key; False when the file is full.

        `header=False` leaves the file's header behind the in-memory fields until the caller's
        `write_header()` (the index service writes it once per record, not once per key).
        """
        n = self.index_count
        if self.sealed or n >= self.max_entries:
            return False
        mm = self.file.mm
        h = key_hash(key)
        slot_at = _SLOTS_AT + (h % self.slots) * _SLOT_BYTES
        (prev,) = SLOT.unpack_from(mm, slot_at)
        if prev <= 0 or prev >= n:
            prev = 0
        if n == 1:
            self.begin_timestamp = store_timestamp
            self.begin_phy_offset = phy_offset
        diff = (store_timestamp - self.begin_timestamp) // 1000
        if diff < 0:
            diff = 0
        elif diff > 0x7FFFFFFF:
            diff = 0x7FFFFFFF
        ENTRY.pack_into(mm, self.entries_at + (n - 1) * _ENTRY_BYTES, h, phy_offset, diff, prev)
        SLOT.pack_into(mm, slot_at, n)
        if prev == 0:
            self.hash_slot_count += 1
        self.index_count = n + 1
        self.end_phy_offset = phy_offset
        self.end_timestamp = store_timestamp
        if header:
            self._write_header()
        return True

    def lookup(self, key: str, limit: int, begin_ms: int, end_ms: int) -> list[int]:
        """Physical offsets of entries with `key`'s hash stored within [begin_ms, end_ms]."""
        mm = self.file.mm
        h = key_hash(key)
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
        self.file.close()

    def destroy(self) -> None:
        self.file.destroy()

    def _drop_uncounted(self) -> None:
        """Undo keys written after the header last counted them (a process killed mid-`put`).

        A key's entry, then its hash slot, are written before the header counts it, so a crash
        can leave a slot pointing past `index_count`, which hides every older key of that slot
        from `lookup` and makes the next `put` there cut the chain. Walk each such slot back to
        its newest counted entry (an entry's `prev` is written with it), then zero the rest.
        """
        mm = self.file.mm
        counted = self.index_count
        n = counted
        while n <= self.max_entries:
            at = self.entries_at + (n - 1) * ENTRY.size
            h, phy, diff, prev = ENTRY.unpack_from(mm, at)
            if not (h or phy or diff or prev):
                break
            slot_at = HEADER.size + (h % self.slots) * SLOT.size
            (head,) = SLOT.unpack_from(mm, slot_at)
            if head >= counted:
                while head >= counted:
                    older = 0
                    if head <= self.max_entries:
                        older = ENTRY.unpack_from(mm, self.entries_at + (head - 1) * ENTRY.size)[3]
                    head = older if 0 <= older < head else 0
                SLOT.pack_into(mm, slot_at, head)
            ENTRY.pack_into(mm, at, 0, 0, 0, 0)
            n += 1
