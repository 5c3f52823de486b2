"""IndexService: builds IndexFiles from dispatched records and answers queries by key.

RocketMQ's `IndexService`. Files are named by the wall-clock time they were started
(`yyyyMMddHHmmssSSS`); a new one starts when the last is full.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from zlib_ng.zlib_ng import crc32

from rmqkit.common.properties import KEY_SEPARATOR, split_keys
from rmqkit.protocol.codes import TRANSACTION_TYPE_MASK, SysFlag
from rmqkit.server.store.checkpoint import IndexMark
from rmqkit.server.store.dispatch import DispatchRequest
from rmqkit.server.store.index_file import HASH_MASK, Entry, IndexFile

log = logging.getLogger("rmqkit.store.index")

_ROLLBACK = int(SysFlag.TRANSACTION_ROLLBACK)


def _stamp(ms: int) -> str:
    t = time.localtime(ms / 1000)
    return time.strftime("%Y%m%d%H%M%S", t) + f"{ms % 1000:03d}"


class IndexService:
    """The index files of a store, oldest first."""

    def __init__(self, directory: Path, slots: int, entries: int) -> None:
        self.dir = directory
        self.slots = slots
        self.entries = entries
        self.files: list[IndexFile] = []
        self.indexed_until = 0
        """Records at or past this CommitLog offset are not indexed yet (the end of the last
        record indexed: a record boundary)."""
        self._seeds: dict[str, int] = {}
        self._sealed_unsynced: list[IndexFile] = []
        """Files sealed since the last `dirty()`: their slot tables went into the mapping."""

    def load(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        for p in sorted(self.dir.iterdir()):
            if p.is_file() and p.name.isdigit():
                f = IndexFile(p, self.slots, self.entries, create=False)
                self.files.append(f)
        for f in self.files[:-1]:
            f.seal()

    def mark(self) -> IndexMark:
        """Where the index stands now, for the checkpoint (see `recover`)."""
        if not self.files:
            return IndexMark(0, until=self.indexed_until)
        f = self.files[-1]
        return IndexMark(int(f.path.name), f.header, self.indexed_until)

    def recover(
        self, mark: IndexMark | None, redispatch_from: int, *, clean: bool, log_end: int = -1
    ) -> int:
        """Make the loaded files agree with the checkpoint; returns where indexing must resume.

        After a clean stop every file is whole, and indexing goes on where the mark says. After
        a crash only what `mark` recorded is trusted: files started later are deleted, and the
        file it names goes back to the entries it counted then (`IndexFile.restore`); every
        record from `mark.until` on is indexed again, or from `redispatch_from` when the mark
        does not say (older checkpoints), and never past `log_end`, where the CommitLog was
        cut (records written there later are new). A result below `redispatch_from` is for
        the index alone; records before `indexed_until` are skipped when dispatched again.
        Without a mark (no checkpoint, or one written before marks existed) nothing is
        trusted: every file is deleted and the whole CommitLog is indexed again (the returned
        0 means from its first record).
        """
        if clean and mark is None:
            self.indexed_until = redispatch_from
            return redispatch_from
        if not clean and mark is not None:
            while self.files and int(self.files[-1].path.name) > mark.file_stamp:
                f = self.files.pop()
                log.warning(
                    "recovery: deleting index file %s, started after the checkpoint", f.path
                )
                f.destroy()
            if self.files and int(self.files[-1].path.name) == mark.file_stamp:
                f = self.files[-1]
                try:
                    dropped = f.restore(mark.header)
                except ValueError as exc:
                    log.error("recovery: %s", exc)
                    mark = None
                else:
                    if dropped:
                        log.warning(
                            "recovery: index file %s back to its %d checkpointed entries "
                            "(%d dropped)",
                            f.path.name,
                            f.count,
                            dropped,
                        )
        if mark is None:
            if self.files:
                log.warning("recovery: no usable index position in the checkpoint: rebuilding")
            for f in self.files:
                f.destroy()
            self.files = []
            self.indexed_until = 0
            return 0
        until = redispatch_from if mark.until < 0 else mark.until
        if log_end >= 0:
            until = min(until, log_end)
        self.indexed_until = until
        return min(until, redispatch_from)

    def _writable(self, now_ms: int) -> IndexFile:
        if self.files and not self.files[-1].full:
            return self.files[-1]
        if self.files:
            self.files[-1].seal()
            self._sealed_unsynced.append(self.files[-1])
        name = _stamp(now_ms)
        while (self.dir / name).exists() or (self.files and name <= self.files[-1].path.name):
            now_ms += 1
            name = _stamp(now_ms)
        f = IndexFile(self.dir / name, self.slots, self.entries, create=True)
        self.files.append(f)
        return f

    def dispatch(self, run: list[DispatchRequest]) -> None:
        """Index the UNIQ_KEY and KEYS of each record of `run` (not of rolled-back halves)."""
        until = self.indexed_until
        entries: list[Entry] = []
        add = entries.append
        seeds = self._seeds
        last: DispatchRequest | None = None
        for req in run:
            phy = req.commit_log_offset
            if phy < until:
                continue
            last = req
            uniq = req.uniq_key
            keys = req.keys
            if not (uniq or keys) or req.sys_flag & TRANSACTION_TYPE_MASK == _ROLLBACK:
                continue
            # The CRC of "topic#", carried on over the key: key_hash(f"{topic}#{key}") without
            # building that string.
            seed = seeds.get(req.topic)
            if seed is None:
                seed = self._seed(req.topic)
            ts = req.store_timestamp
            if uniq:
                add((crc32(uniq.encode("utf-8"), seed) & HASH_MASK, phy, ts))
            if keys:
                if KEY_SEPARATOR in keys:
                    for k in split_keys(keys):
                        add((crc32(k.encode("utf-8"), seed) & HASH_MASK, phy, ts))
                else:
                    add((crc32(keys.encode("utf-8"), seed) & HASH_MASK, phy, ts))
        if entries:
            self._put(entries)
        if last is not None:
            self.indexed_until = last.commit_log_offset + last.msg_size

    def add_entries(self, entries: list[Entry], until: int) -> None:
        """Put entries read from the log elsewhere (the index builder's `KeyReader`); every
        record below `until`, a record boundary, is then indexed."""
        if entries:
            self._put(entries)
        if until > self.indexed_until:
            self.indexed_until = until

    def _seed(self, topic: str) -> int:
        seed = crc32(f"{topic}#".encode())
        if len(self._seeds) < 100_000:
            self._seeds[topic] = seed
        return seed

    def _put(self, entries: list[Entry]) -> None:
        """Put `entries` into the last file, and what does not fit into new ones."""
        done = self.files[-1].put_entries(entries) if self.files else 0
        while done < len(entries):
            f = self._writable(entries[done][2])  # seals the full file and starts the next
            got = f.put_entries(entries, done)
            if got == done:  # a new file that takes nothing: maxIndexNum allows no entries
                log.error("index: %d keys did not fit an empty index file", len(entries) - done)
                return
            done = got

    def lookup(self, topic: str, key: str, limit: int, begin_ms: int, end_ms: int) -> list[int]:
        """Physical offsets for `topic#key`, newest files first, without duplicates."""
        out: list[int] = []
        seen: set[int] = set()
        full_key = f"{topic}#{key}"
        for f in reversed(self.files):
            if len(out) >= limit:
                break
            if not f.overlaps(begin_ms, end_ms):
                continue
            for phy in f.lookup(full_key, limit - len(out), begin_ms, end_ms):
                if phy not in seen:
                    seen.add(phy)
                    out.append(phy)
        return out

    @property
    def last_update_timestamp(self) -> int:
        return self.files[-1].end_timestamp if self.files else 0

    @property
    def last_update_phy_offset(self) -> int:
        return self.files[-1].end_phy_offset if self.files else 0

    def dirty(self) -> list[IndexFile]:
        """The files to sync for a checkpoint: the last, and every one sealed since the call
        before (more than one when several filled between two checkpoints)."""
        out = [f for f in self._sealed_unsynced if f in self.files]
        self._sealed_unsynced = []
        if self.files and self.files[-1] not in out:
            out.append(self.files[-1])
        return out

    def store_slots(self) -> None:
        """Write the hash slots of the file being written into it, for a clean stop."""
        if self.files:
            self.files[-1].store_slots()

    def delete_below(self, commit_log_min: int) -> int:
        """Delete sealed files whose every entry points below `commit_log_min`."""
        gone = 0
        while (
            len(self.files) > 1
            and self.files[0].sealed
            and self.files[0].end_phy_offset < commit_log_min
        ):
            self.files.pop(0).destroy()
            gone += 1
        return gone

    def close(self) -> None:
        for f in self.files:
            f.close()
        self.files = []
