"""Crash recovery: find where the valid CommitLog ends, cut there, and rebuild what depends on it.

1. Scan the CommitLog from the checkpoint's flushed offset (everything before it was fsynced),
   checking each record's CRC, to the first byte that is not a whole, valid record: the valid end.
2. Zero everything from there (a torn or garbled tail is never served) and drop later segments.
3. Cut every ConsumeQueue back to entries for records before the checkpoint's logics offset, and
   re-dispatch the CommitLog from there to the valid end (ConsumeQueue and IndexFile entries).

Without a checkpoint, the whole CommitLog is scanned and every derived file rebuilt. After a clean
stop the checkpoint points at the end, so step 1 reads one empty header and recovery is instant.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from rmqkit.server.store.checkpoint import Checkpoint
from rmqkit.server.store.dispatch import ScanKind, scan_record
from rmqkit.server.store.mapped_file import MappedFileQueue

log = logging.getLogger("rmqkit.store.recovery")


@dataclass(slots=True)
class RecoveryReport:
    crashed: bool
    valid_end: int
    """CommitLog offset one past the last valid record."""
    redispatch_from: int
    records_checked: int
    truncated_from: int | None
    """Where garbage began, if any was found."""
    reason: str = ""


def find_valid_end(queue: MappedFileQueue, start: int) -> tuple[int, int, str]:
    """`(valid_end, records_checked, why_it_stopped)` scanning with CRC checks from `start`."""
    if not queue.files:
        return 0, 0, "empty"
    pos = max(start, queue.min_offset)
    checked = 0
    while True:
        mf = queue.find(pos)
        if mf is None:
            return pos, checked, "end of files"
        scan = scan_record(mf.view(0, mf.size), pos - mf.start, check_crc=True)
        if scan.kind is ScanKind.RECORD:
            pos += scan.size
            checked += 1
        elif scan.kind is ScanKind.BLANK:
            pos = mf.end
        elif scan.kind is ScanKind.END:
            return pos, checked, "end of data"
        else:
            return pos, checked, scan.reason


def plan_recovery(queue: MappedFileQueue, cp: Checkpoint | None, crashed: bool) -> RecoveryReport:
    """Find the valid end of the CommitLog and where re-dispatch must start; cuts the log."""
    if cp is None:
        scan_from = redispatch = queue.min_offset
        if queue.files:
            log.warning("no usable checkpoint: scanning the whole CommitLog")
    else:
        scan_from = cp.commit_log_flushed
        redispatch = cp.logics_flushed
    if scan_from > queue.max_offset:
        scan_from = queue.min_offset
    end, checked, why = find_valid_end(queue, scan_from)
    truncated: int | None = None
    if why not in ("end of data", "end of files", "empty"):
        truncated = end
        log.warning("CommitLog: invalid record at offset %d (%s); truncating there", end, why)
    if queue.files:
        queue.truncate(end)
    redispatch = max(min(redispatch, end), queue.min_offset)
    return RecoveryReport(crashed, end, redispatch, checked, truncated, why)
