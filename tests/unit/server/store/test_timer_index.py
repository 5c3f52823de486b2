"""The timer's disk index: TimerLog units, wheel slots, due slots, restart, compaction, cleanup."""

from __future__ import annotations

from pathlib import Path

import pytest

from rmqkit.server.store.timer import TimerCheckpoint
from rmqkit.server.store.timer_index import TimerIndex
from rmqkit.server.store.timer_log import UNIT, TimerLog, TimerWheelFile

P = 100
NOW = 1_700_000_000_000  # a multiple of P
HOUR = 3_600_000


def index(root: Path, precision: int = P, max_delay: int = HOUR, upf: int = 64) -> TimerIndex:
    return TimerIndex(root, precision, max_delay, units_per_file=upf)


def opened(root: Path, cp: TimerCheckpoint | None = None, now: int = NOW, **kw: int) -> TimerIndex:
    ix = index(root, **kw)
    ix.open(cp or TimerCheckpoint(), now, 10**9)
    return ix


def e(n: int) -> tuple[int, int, int]:
    return (n, 1000 + n, 50)


def due(ix: TimerIndex, now: int) -> list[tuple[int, list[tuple[int, int, int]]]]:
    out, _ = ix.take_due(now, 10**6)
    return out


def test_slots_come_due_whole_in_time_order_never_before_they_end(tmp_path: Path) -> None:
    ix = opened(tmp_path)
    assert ix.link(NOW + 500, e(0)) and ix.link(NOW + 200, e(1)) and ix.link(NOW + 500, e(2))
    assert ix.pending == 3
    ix.scan()
    assert ix.next_due() == NOW + 300
    assert due(ix, NOW + 299) == []
    assert due(ix, NOW + 300) == [(NOW + 200, [e(1)])]
    assert due(ix, NOW + 599) == []
    assert due(ix, NOW + 10_000) == [(NOW + 500, [e(0), e(2)])]  # oldest first within a slot
    assert ix.pending == 0 and due(ix, NOW + 20_000) == []


def test_a_slot_already_taken_is_filed_under_the_next_one_to_read(tmp_path: Path) -> None:
    ix = opened(tmp_path)
    ix.link(NOW + 100, e(0))
    assert due(ix, NOW + 250) == [(NOW + 100, [e(0)])]
    assert ix.read_ms == NOW + 200
    ix.link(NOW, e(1))  # its slot has passed: it goes to the slot being read
    assert due(ix, NOW + 300) == [(NOW + 200, [e(1)])]
    ix.link(NOW + 250, e(2))  # not a slot start: the slot that ends after it
    assert due(ix, NOW + 399) == [] and due(ix, NOW + 400) == [(NOW + 300, [e(2)])]


def test_far_slots_are_found_by_scanning_in_bounded_steps(tmp_path: Path) -> None:
    ix = opened(tmp_path)
    far = NOW + 30 * 60_000  # 18,000 slots ahead
    ix.link(far, e(0))
    ix.scan(limit=1000)
    assert ix.next_due() is None and ix.scan_ms == NOW + 1000 * P
    for _ in range(20):
        ix.scan(limit=1000)
    assert ix.next_due() == far + P
    ix.link(NOW + 700, e(1))  # nearer than what the scan found: found at once
    assert ix.next_due() == NOW + 800
    assert [s for s, _ in due(ix, far + P)] == [NOW + 700, far]


def test_a_slot_held_by_another_pending_lap_is_refused(tmp_path: Path) -> None:
    ix = opened(tmp_path, max_delay=10 * P)
    span = ix.span_ms
    assert ix.link(NOW + P, e(0))
    assert not ix.link(NOW + P + span, e(1))  # same wheel slot, one lap later
    assert not ix.link(NOW + 2 * span, e(2))  # past the wheel
    due(ix, NOW + 2 * P)
    assert ix.link(NOW + P + span, e(1))


def test_a_clean_restart_trusts_the_wheel(tmp_path: Path) -> None:
    ix = opened(tmp_path)
    for i in range(100):
        ix.link(NOW + (i % 7) * P, e(i))
    due(ix, NOW + 3 * P)  # slots 0, 1 and 2 taken
    cp = ix.checkpoint(5, ix.first_pending_ms, clean=True)
    ix.close()
    assert cp.clean and cp.pending_count == ix.pending == sum(i % 7 >= 3 for i in range(100))
    again = opened(tmp_path, cp, now=NOW + 3 * P)
    assert again.pending == cp.pending_count
    got = due(again, NOW + 7 * P)
    assert [s for s, _ in got] == [NOW + k * P for k in range(3, 7)]
    assert sorted(x for _, es in got for x, _, _ in es) == [i for i in range(100) if i % 7 >= 3]


def test_after_a_crash_the_log_is_cut_at_the_checkpoint_and_compacted(tmp_path: Path) -> None:
    ix = opened(tmp_path)
    for i in range(150):  # three TimerLog files of 64 units
        ix.link(NOW + (i % 5) * P, e(i))
    due(ix, NOW + P)  # slot 0 delivered
    cp = ix.checkpoint(150, ix.first_pending_ms, clean=False)
    for i in range(150, 170):  # read after the checkpoint: the crash loses these units
        ix.link(NOW + 4 * P, e(i))
    ix.wheel.flush()  # the wheel on disk even names them
    ix.log.flush()
    del ix  # no clean stop
    again = opened(tmp_path, cp, now=NOW + P)
    assert again.pending == 120
    assert sorted(p.name for p in (tmp_path / "timerlog").iterdir()) == [
        "00000000000000000000", "00000000000000002560",
    ]  # fmt: skip
    got = due(again, NOW + 10 * P)
    assert sorted(x for _, es in got for x, _, _ in es) == [i for i in range(150) if i % 5]


def test_units_past_what_the_store_recovered_are_dropped(tmp_path: Path) -> None:
    ix = opened(tmp_path)
    for i in range(10):
        ix.link(NOW + P, e(i))
    cp = ix.checkpoint(10, ix.first_pending_ms, clean=True)
    ix.close()
    again = index(tmp_path)
    again.open(cp, NOW, 6)  # the timer queue now ends at 6
    assert [x for _, es in due(again, NOW + 5 * P) for x, _, _ in es] == list(range(6))


def test_a_new_precision_re_slots_pending_units_never_earlier(tmp_path: Path) -> None:
    ix = opened(tmp_path, precision=1000)
    ix.link(NOW + 3000, e(0))
    cp = ix.checkpoint(1, ix.first_pending_ms, clean=True)
    ix.close()
    again = opened(tmp_path, cp, precision=100)
    assert due(again, NOW + 3999) == []
    assert due(again, NOW + 4000) == [(NOW + 3900, [e(0)])]


def test_missing_log_files_mean_re_reading_the_queue(tmp_path: Path) -> None:
    ix = opened(tmp_path)
    for i in range(10):
        ix.link(NOW + P, e(i))
    cp = ix.checkpoint(10, ix.first_pending_ms, clean=True)
    ix.close()
    for f in (tmp_path / "timerlog").iterdir():
        f.unlink()
    again = index(tmp_path)
    assert again.open(cp, NOW, 10**9) is False
    assert again.pending == 0 and again.read_ms == NOW
    assert index(tmp_path).open(TimerCheckpoint(5, NOW, ((0, 5),)), NOW, 99) is False  # format 1


def test_log_files_whose_slots_have_all_passed_are_deleted(tmp_path: Path) -> None:
    ix = opened(tmp_path)
    for i in range(64 * 3):
        ix.link(NOW + (1 + i // 64) * P, e(i))
    assert len(ix.log.files.files) == 3
    due(ix, NOW + 2 * P)
    assert ix.delete_passed(ix.first_pending_ms) == 1
    due(ix, NOW + 4 * P)
    assert ix.delete_passed(ix.first_pending_ms) == 1  # the last file is never deleted
    assert len(ix.log.files.files) == 1


def test_unit_and_slot_layouts(tmp_path: Path) -> None:
    assert UNIT.size == 40
    log = TimerLog(tmp_path / "log", 4)
    log.load(0)
    positions = [log.append(-1 if i == 0 else (i - 1) * 40, 700, e(i)) for i in range(6)]
    assert positions == [0, 40, 80, 120, 160, 200] and log.end == 240
    assert log.chain(200, 10) == [e(i) for i in range(6)]
    assert log.chain(200, 2) == [e(4), e(5)]
    assert log.read(240) is None and log.read(4000) is None
    log.close()
    again = TimerLog(tmp_path / "log", 4)
    again.load(120)
    assert again.end == 120 and again.read(120) is None
    assert again.chain(80, 10) == [e(0), e(1), e(2)]
    wheel = TimerWheelFile(tmp_path / "wheel", 100, 10)
    assert wheel.open(fresh=False) is False
    assert wheel.index(1_000) == wheel.index(2_000) == 0


@pytest.mark.parametrize(
    "data",
    [{"version": 2, "logEnd": 40, "nextOffset": 1},  # no read time: not format 2
     {"version": 2, "logEnd": "x", "readTimeMs": 5}],
)  # fmt: skip
def test_a_malformed_format_2_checkpoint_means_start_over(data: dict[str, object]) -> None:
    assert TimerCheckpoint.decode(data) == TimerCheckpoint()


def test_format_2_round_trips() -> None:
    cp = TimerCheckpoint(7, NOW, (), 400, 9, 100, 72_004, True)
    assert TimerCheckpoint.decode(cp.encode()) == cp
