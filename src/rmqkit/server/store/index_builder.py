"""The index builder: a child process that keeps the IndexFiles, tailing the CommitLog itself.

    python -m rmqkit.server.store.index_builder '<settings as JSON>'

Indexing costs the broker's event loop about 1.2 us a message (two keys: the UNIQ_KEY and one
of KEYS), a sixth of what a batch send costs it in all. With `messageIndexProcess` the store
starts this process instead (`index_process.IndexProcess`): it maps the CommitLog read-only
and reads the records the store announces, so the event loop's share is one line on a pipe per
reput pass, not a call per record.

The parent writes requests to its standard input and reads replies from its standard output,
one JSON array a line:

    parent -> builder                                   builder -> parent
    ["u", end]          index the records up to `end`   (no reply)
    ["q", id, topic, key, limit, begin_ms, end_ms]      ["q", id, [offsets], last_ms, last_phy]
    ["s", id]           sync the dirty files             ["s", id, stamp, [header], until]
    ["d", id, offset]   delete files wholly below it    ["d", id, count]
    ["x", id]           store the slots, sync, stop      ["x", id, stamp, [header], until]
                                                         ["e", id, message]   (the request failed)

`end` is always a record boundary the parent's reput has passed, so every record below it is
whole in the CommitLog. Requests are answered in order, each after everything announced before
it is indexed: a query sees every message stored before it was asked. Announcements that
arrive together are indexed together.

The builder writes nothing of its own on its way out but on `x`: if the parent dies (it gets a
SIGKILL then, `PR_SET_PDEATHSIG`) or closes the pipe, the next start recovers the index from
the checkpoint's mark as after any crash. SIGINT and SIGTERM are ignored: a Ctrl-C reaches the
whole process group, and the parent stops the builder itself, after its last dispatch.
"""

from __future__ import annotations

import ctypes
import logging
import mmap
import os
import select
import signal
import sys
from pathlib import Path
from typing import Any

import orjson

from rmqkit.errors import DiskFullError
from rmqkit.server.store.dispatch import ScanKind, scan_record
from rmqkit.server.store.index_file import Entry
from rmqkit.server.store.index_keys import PARTIAL, READ, KeyReader
from rmqkit.server.store.index_service import IndexService
from rmqkit.server.store.mapped_file import file_name

log = logging.getLogger("rmqkit.store.index")

RUN = 4096
"""Records handed to the index at a time."""
RETRY_S = 1.0
"""With the disk full, try again this often (and at each request)."""
_PR_SET_PDEATHSIG = 1


class CommitLogTail:
    """Reads CommitLog records from `next_offset` on, one segment mapped read-only at a time."""

    def __init__(self, directory: Path, segment_bytes: int, next_offset: int) -> None:
        self.dir = directory
        self.segment_bytes = segment_bytes
        self.next_offset = next_offset
        self._start = -1
        self._mm: mmap.mmap | None = None
        self.stalled = ""
        """Why reading stopped before the offset it was asked to reach (logged once)."""
        self.keys = KeyReader()

    def read(self, end: int, limit: int, skip_below: int, entries: list[Entry]) -> int:
        """Append the index entries of up to `limit` records from `next_offset` on, stopping
        at `end`, to `entries` (none for records before `skip_below`); returns how many
        records were read. `next_offset` is then past them."""
        n = 0
        while self.next_offset < end and n < limit:
            mm = self._segment()
            if mm is None:
                break
            start = self._start
            stop = min(end - start, self.segment_bytes)
            pos, got, why = self.keys.read(
                mm, self.next_offset - start, stop, limit - n, start, entries, skip_below
            )
            n += got
            self.next_offset = start + pos
            if why == READ:
                continue
            if why == PARTIAL:  # announced in part: wait for the rest
                break
            with memoryview(mm) as view:
                scan = scan_record(view, pos, check_crc=False)
            seg_end = start + self.segment_bytes
            if scan.kind is ScanKind.BLANK or (scan.kind is ScanKind.END and end >= seg_end):
                self.next_offset = seg_end  # the rest of the segment is blank
                continue
            # Not a record where the store's reput read one: stop here, as its reput would.
            why_not = scan.reason or scan.kind.name
            if why_not != self.stalled:
                log.error("index stopped at CommitLog offset %d: %s", self.next_offset, why_not)
                self.stalled = why_not
            break
        return n

    def _segment(self) -> mmap.mmap | None:
        """The mapping of the segment holding `next_offset`; None when no segment is left."""
        start = self.next_offset - self.next_offset % self.segment_bytes
        if start == self._start and self._mm is not None:
            return self._mm
        self.close()
        path = self.dir / file_name(start)
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            # Deleted by retention while this lagged: go on at the oldest segment left.
            later = sorted(
                int(p.name) for p in self.dir.iterdir() if p.name.isdigit() and int(p.name) > start
            )
            if not later:
                return None
            log.warning("index: CommitLog segment %s is gone; going on at %d", path.name, later[0])
            self.next_offset = later[0]
            return self._segment()
        try:
            mm = mmap.mmap(fd, self.segment_bytes, mmap.MAP_SHARED, mmap.PROT_READ)
        finally:
            os.close(fd)
        # No readahead: under SYNC_FLUSH the broker writes these pages with small pwrites,
        # which ext4 makes slow on pages read ahead into large folios (see MappedFile).
        mm.madvise(mmap.MADV_RANDOM)
        self._start, self._mm = start, mm
        return mm

    def close(self) -> None:
        if self._mm is not None:
            self._mm.close()
        self._mm, self._start = None, -1


class IndexBuilder:
    """The builder's state: the index, the CommitLog it reads, and what it was told to index."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.index = IndexService(Path(cfg["index_dir"]), cfg["slots"], cfg["entries"])
        self.index.load()
        self.index.indexed_until = cfg["until"]
        self.tail = CommitLogTail(Path(cfg["commit_log_dir"]), cfg["segment_bytes"], cfg["until"])
        self.target = cfg["until"]
        self.no_room: DiskFullError | None = None

    def catch_up(self) -> bool:
        """Index every record below `target`; False when the disk is full (retried later)."""
        tail = self.tail
        while tail.next_offset < self.target:
            at = tail.next_offset
            entries: list[Entry] = []
            tail.read(self.target, RUN, self.index.indexed_until, entries)
            if tail.next_offset == at:
                break
            try:
                self.index.add_entries(entries, tail.next_offset)
            except DiskFullError as exc:
                tail.next_offset = (
                    at  # read again; entries a full file took come twice, lookups drop those
                )
                if self.no_room is None:
                    log.error("index waits for disk space at offset %d: %s", at, exc)
                self.no_room = exc
                return False
        if self.no_room is not None:
            log.warning("index goes on: disk space found")
            self.no_room = None
        return True

    def mark(self) -> list[Any]:
        m = self.index.mark()
        return [m.file_stamp, list(m.header), m.until]

    def answer(self, req: list[Any]) -> list[Any] | None:
        """The reply to one request (None for an announcement)."""
        kind = req[0]
        if kind == "u":
            return None
        rid = req[1]
        try:
            if kind == "q":
                _, _, topic, key, limit, begin, end = req
                offsets = self.index.lookup(topic, key, limit, begin, end)
                idx = self.index
                return ["q", rid, offsets, idx.last_update_timestamp, idx.last_update_phy_offset]
            if kind == "s":
                mark = self.mark()  # behind on a full disk, and saying so (`until`)
                for f in self.index.dirty():
                    f.sync()
                return ["s", rid, *mark]
            if kind == "d":
                return ["d", rid, self.index.delete_below(req[2])]
            if kind == "x":
                self.index.store_slots()
                mark = self.mark()
                for f in self.index.files:
                    f.sync()
                return ["x", rid, *mark]
        except OSError as exc:  # DiskFullError is one
            return ["e", rid, f"{type(exc).__name__}: {exc}"]
        return ["e", rid, f"unknown request {kind!r}"]


def serve(builder: IndexBuilder, fd_in: int, fd_out: int) -> int:
    """Answer requests until `x` (returns 0) or the end of the input (returns 1)."""
    pending = b""
    while True:
        wait = RETRY_S if builder.no_room is not None else None
        ready, _, _ = select.select([fd_in], [], [], wait)
        if not ready:
            builder.catch_up()
            continue
        data = os.read(fd_in, 1 << 16)
        if not data:
            return 1
        lines = (pending + data).split(b"\n")
        pending = lines.pop()
        reqs = [orjson.loads(line) for line in lines if line]
        for req in reqs:
            if req[0] == "u" and req[1] > builder.target:
                builder.target = req[1]
        builder.catch_up()
        out = []
        for req in reqs:
            reply = builder.answer(req)
            if reply is not None:
                out.append(orjson.dumps(reply) + b"\n")
            if req[0] == "x":
                os.write(fd_out, b"".join(out))
                return 0
        if out:
            os.write(fd_out, b"".join(out))


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the pipe's end stops it instead
        pass
    cfg = orjson.loads(argv[1])
    if os.getppid() != cfg["parent"]:
        return 1  # the parent died before the line above (it may itself be pid 1: a container)
    logging.basicConfig(
        level=cfg.get("log_level", logging.WARNING),
        format="%(asctime)s %(levelname)s %(name)s (index builder): %(message)s",
    )
    builder = IndexBuilder(cfg)
    out = sys.stdout.fileno()
    os.write(out, orjson.dumps(["ready", builder.index.indexed_until]) + b"\n")
    rc = serve(builder, sys.stdin.fileno(), out)
    builder.tail.close()
    if rc == 0:
        builder.index.close()  # its slots are stored already, or the parent knows they are not
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv))
