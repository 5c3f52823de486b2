"""The timer's pending messages on disk, and where its reading of them stands (RocketMQ 5's
`TimerMessageStore` enqueue into the TimerLog and wheel, and its dequeue read pointer).

Memory holds three numbers, not one entry per message:

- `read_ms`: every slot before it has been taken (its messages delivered or being delivered);
- `scan_ms`: every slot in [read_ms, scan_ms) is known to be empty;
- `first_ms`: None, or `scan_ms` when the slot there is known to hold messages.

`link` files a message under its slot (or under `read_ms` if its slot was already taken, so it
is delivered at once); `take_due` reads whole slots once they have passed. A slot is due when it
has ended (`slot + precision <= now`), so a message never arrives before its time and at most one
slot after it. Scanning ahead for the next non-empty slot is bounded per call.

Restart: a checkpoint written at a clean stop is trusted with the wheel as it is. After a crash
the TimerLog is cut back to the checkpoint's end and compacted into a fresh log holding only the
units still pending, and the wheel is rebuilt from it.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from rmqkit.server.store.timer import TimerCheckpoint, slot_of
from rmqkit.server.store.timer_log import (
    EMPTY_SLOT,
    UNITS_PER_FILE,
    Entry,
    Slot,
    TimerLog,
    TimerWheelFile,
    recover_dir,
    replace_dir,
)

log = logging.getLogger("rmqkit.store.timer")

SCAN_PER_CALL = 4096
"""Slots looked at per `scan` call (a few milliseconds)."""


class TimerIndex:
    """Pending timer messages by slot, in a TimerLog and a wheel file under `data_dir`.

    Args:
        data_dir: the store root; the files are `timerlog/` and `timerwheel` in it.
        precision_ms: the slot width.
        max_delay_ms: the longest delay; the wheel holds two laps of it, so in steady state no
            two pending slots share a wheel slot.
        units_per_file: TimerLog file size in units.
    """

    def __init__(
        self,
        data_dir: Path,
        precision_ms: int,
        max_delay_ms: int,
        *,
        units_per_file: int = UNITS_PER_FILE,
    ) -> None:
        self.precision_ms = precision_ms
        self.slot_count = 2 * (max_delay_ms // precision_ms + 1) + 2
        self.log_dir = data_dir / "timerlog"
        self.units_per_file = units_per_file
        self.log = TimerLog(self.log_dir, units_per_file)
        self.wheel = TimerWheelFile(data_dir / "timerwheel", precision_ms, self.slot_count)
        self.read_ms = 0
        self.scan_ms = 0
        self.first_ms: int | None = None
        self.pending = 0
        """Messages in slots not taken yet."""

    @property
    def span_ms(self) -> int:
        return self.slot_count * self.precision_ms

    def _slot_at(self, now_ms: int) -> int:
        """The slot `now_ms` falls in (not due yet)."""
        return now_ms // self.precision_ms * self.precision_ms

    # -- opening ----------------------------------------------------------------------------------

    def open(self, cp: TimerCheckpoint, now_ms: int, valid_below: int) -> bool:
        """Restore from a checkpoint; `valid_below` is the timer ConsumeQueue's end (units for
        entries at or past it were cut by the store's recovery and are dropped).

        Returns False when there was nothing to restore from (no checkpoint of this format, or
        its files are missing): the index starts empty and the caller re-reads the timer queue.
        """
        recover_dir(self.log_dir)
        if cp.log_end is not None and cp.read_time_ms is not None:
            self.log.load(cp.log_end)
            if self.log.end >= cp.log_end:
                same = cp.precision_ms == self.precision_ms and cp.slot_count == self.slot_count
                trusted = cp.clean and same and cp.next_offset <= valid_below
                if trusted and self.wheel.open(fresh=False):
                    self.pending = cp.pending_count
                else:
                    old_precision = cp.precision_ms or self.precision_ms
                    self._compact(cp.read_time_ms, valid_below, old_precision)
                self._start_at(min(self._align(cp.read_time_ms), self._slot_at(now_ms)))
                return True
            log.error("timer: the timer log ends at %d, its checkpoint says %d; re-reading the "
                      "timer queue instead", self.log.end, cp.log_end)  # fmt: skip
            self.log.close()
            self.log = TimerLog(self.log_dir, self.units_per_file)
        shutil.rmtree(self.log_dir, ignore_errors=True)
        self.log.load(0)
        self.wheel.open(fresh=True)
        self.pending = 0
        self._start_at(self._slot_at(now_ms))
        return False

    def _align(self, ms: int) -> int:
        return ms - ms % self.precision_ms

    def _start_at(self, read_ms: int) -> None:
        self.read_ms = self.scan_ms = read_ms
        self.first_ms = None

    def _compact(self, read_time_ms: int, valid_below: int, old_precision_ms: int) -> None:
        """Copy the units still pending into a fresh log and rebuild the wheel from them."""
        new_dir = self.log_dir.with_name(self.log_dir.name + ".new")
        shutil.rmtree(new_dir, ignore_errors=True)
        fresh = TimerLog(new_dir, self.units_per_file)
        fresh.load(0)
        self.wheel.open(fresh=True)
        self.pending = 0
        self.read_ms = self._align(read_time_ms)
        kept = dropped = 0
        for unit in self.log.scan(self.log.end):
            if unit.slot_ms < read_time_ms or unit.entry[0] >= valid_below:
                dropped += 1
                continue
            slot_ms = unit.slot_ms
            if old_precision_ms != self.precision_ms:  # due no earlier than it was
                slot_ms = slot_of(unit.slot_ms + old_precision_ms, self.precision_ms)
            self._append(fresh, max(slot_ms, self.read_ms), unit.entry)
            kept += 1
        fresh.flush()
        end = fresh.end
        fresh.close()
        self.log.close()
        replace_dir(new_dir, self.log_dir)
        self.log = TimerLog(self.log_dir, self.units_per_file)
        self.log.load(end)
        self.wheel.flush()
        log.log(logging.WARNING if kept or dropped else logging.DEBUG,
                "timer: rebuilt the pending index after an unclean stop: %d messages pending, "
                "%d delivered or cut dropped", kept, dropped)  # fmt: skip

    # -- enqueue ----------------------------------------------------------------------------------

    def link(self, out_ms: int, entry: Entry) -> bool:
        """File one message under its slot; False when the wheel slot is still held by another
        pending lap (the caller tries again once reading has moved on)."""
        p = self.precision_ms
        slot_ms = max(out_ms if out_ms % p == 0 else self._align(out_ms) + p, self.read_ms)
        if slot_ms >= self.read_ms + self.span_ms:
            return False
        raw = self.wheel.raw(slot_ms)
        if raw.time_ms != slot_ms and raw.num > 0 and raw.time_ms >= self.read_ms:
            return False
        self._append(self.log, slot_ms, entry)
        if slot_ms < self.scan_ms:
            self.scan_ms = slot_ms
            self.first_ms = slot_ms
        elif slot_ms == self.scan_ms:
            self.first_ms = slot_ms
        return True

    def _append(self, into: TimerLog, slot_ms: int, entry: Entry) -> None:
        cur = self.wheel.get(slot_ms)
        pos = into.append(cur.last_pos if cur.num else -1, slot_ms, entry)
        self.wheel.put(Slot(slot_ms, cur.first_pos if cur.num else pos, pos, cur.num + 1))
        self.pending += 1

    # -- dequeue ----------------------------------------------------------------------------------

    def scan(self, limit: int = SCAN_PER_CALL) -> None:
        """Look for the next non-empty slot, at most `limit` slots further."""
        n = 0
        end = self.read_ms + self.span_ms
        while self.first_ms is None and self.pending and n < limit and self.scan_ms < end:
            if self.wheel.get(self.scan_ms) is not EMPTY_SLOT:
                self.first_ms = self.scan_ms
                return
            self.scan_ms += self.precision_ms
            n += 1

    def take_due(self, now_ms: int, max_msgs: int) -> tuple[list[tuple[int, list[Entry]]], bool]:
        """Whole slots that have passed, in time order, up to about `max_msgs` messages;
        and whether more may be due."""
        out: list[tuple[int, list[Entry]]] = []
        n = 0
        current = self._slot_at(now_ms)
        for _ in range(16):
            if not self.pending:
                self._start_at(max(self.read_ms, current))
                return out, False
            self.scan()
            f = self.first_ms
            if f is None:  # [read_ms, scan_ms) is empty
                self.read_ms = max(self.read_ms, min(self.scan_ms, current))
                if self.scan_ms >= current:
                    return out, False
                continue
            if f + self.precision_ms > now_ms:
                self.read_ms = max(self.read_ms, min(f, current))
                return out, False
            if n >= max_msgs:
                return out, True
            slot = self.wheel.get(f)
            entries = self.log.chain(slot.last_pos, slot.num) if slot.num else []
            out.append((f, entries))
            n += len(entries)
            self.pending -= slot.num
            self._start_at(f + self.precision_ms)
        return out, True

    def next_due(self) -> int | None:
        """When the next known non-empty slot falls due; None when none is known yet."""
        return None if self.first_ms is None else self.first_ms + self.precision_ms

    @property
    def first_pending_ms(self) -> int:
        """Every slot before this has been taken or is empty (the checkpoint's read time)."""
        return self.scan_ms

    # -- progress ---------------------------------------------------------------------------------

    def checkpoint(self, next_offset: int, read_time_ms: int, *, clean: bool) -> TimerCheckpoint:
        """Flush the log and the wheel, then describe them (write the result after this)."""
        self.log.flush()
        self.wheel.flush()
        return TimerCheckpoint(
            next_offset, read_time_ms, (), self.log.end, self.pending, self.precision_ms,
            self.slot_count, clean,
        )  # fmt: skip

    def delete_passed(self, before_ms: int) -> int:
        """Delete TimerLog files whose slots have all passed `before_ms`."""
        return self.log.delete_passed(before_ms)

    def close(self) -> None:
        self.log.close()
        self.wheel.close()


__all__ = ["EMPTY_SLOT", "TimerIndex"]
