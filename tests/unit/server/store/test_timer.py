"""Timer routing (RocketMQ 5 checks), slots, the wheel and its checkpoint; DELAY beside TIMER_*."""

from __future__ import annotations

import pytest

from rmqkit.common.properties import decode_properties, encode_properties
from rmqkit.protocol.codes import SysFlag
from rmqkit.server.store import MessageToStore, PutResult, StoreSettings
from rmqkit.server.store.delay import parse_delay_levels, route_delayed
from rmqkit.server.store.timer import (
    PROGRESS_CHUNK,
    TIMER_TOPIC,
    TimerCheckpoint,
    TimerPolicy,
    TimerRefusal,
    TimerStatus,
    TimerWheel,
    requests_timer,
    route_timer,
    slot_of,
    snap_precision,
    timer_out_ms,
)

NOW = 1_700_000_000_123
POLICY = TimerPolicy(enabled=True, max_delay_ms=60_000, precision_ms=1000)


def msg(flag: int = 0, /, **props: str) -> MessageToStore:
    return MessageToStore("Orders", 3, b"body", encode_properties(props), sys_flag=flag)


def routed(m: MessageToStore, policy: TimerPolicy = POLICY) -> MessageToStore:
    out = route_timer(m, NOW, policy)
    assert isinstance(out, MessageToStore), out
    return out


def refused(m: MessageToStore, policy: TimerPolicy = POLICY) -> TimerRefusal:
    out = route_timer(m, NOW, policy)
    assert isinstance(out, TimerRefusal), out
    return out


@pytest.mark.parametrize(
    ("props", "deliver_ms"),
    [
        ({"TIMER_DELAY_MS": "1500"}, NOW + 1500),
        ({"TIMER_DELAY_SEC": "7"}, NOW + 7000),
        ({"TIMER_DELIVER_MS": str(NOW + 2500)}, NOW + 2500),
        # The first present of DELAY_SEC, DELAY_MS, DELIVER_MS wins, as in RocketMQ.
        ({"TIMER_DELIVER_MS": str(NOW + 9000), "TIMER_DELAY_SEC": "2"}, NOW + 2000),
        ({"TIMER_DELIVER_MS": str(NOW + 9000), "TIMER_DELAY_MS": "300"}, NOW + 300),
    ],
)
def test_a_future_time_goes_to_the_timer_topic(props: dict[str, str], deliver_ms: int) -> None:
    m = routed(msg(TAGS="t", KEYS="k", color="red", **props))
    assert (m.topic, m.queue_id, m.body) == (TIMER_TOPIC, 0, b"body")
    p = decode_properties(m.properties)
    assert p["REAL_TOPIC"] == "Orders" and p["REAL_QID"] == "3"
    assert (p["TAGS"], p["KEYS"], p["color"]) == ("t", "k", "red")
    out = int(p["TIMER_OUT_MS"])
    assert out == timer_out_ms(m.properties) and out % 1000 == 0
    # Due at the end of its slot: never before the time asked for, at most one slot after it.
    assert deliver_ms <= out + 1000 < deliver_ms + 1000 + 1


def test_slot_rounding_follows_rocketmq() -> None:
    assert slot_of(5000, 1000) == 4000  # an exact boundary belongs to the slot ending there
    assert slot_of(5001, 1000) == 5000
    assert slot_of(5999, 1000) == 5000
    assert slot_of(250, 100) == 200
    assert [snap_precision(v) for v in (1, 99, 100, 199, 200, 499, 500, 999, 1000, 5000)] == [
        100, 100, 100, 100, 200, 200, 500, 500, 1000, 1000,
    ]  # fmt: skip
    assert StoreSettings(timer_precision_ms=300).timer_precision_ms == 200


@pytest.mark.parametrize(
    "props",
    [
        {},
        {"TAGS": "TIMER_DELAY_MS"},  # the word inside a value asks for nothing
        {"TIMER_DELIVER_MS": str(NOW)},  # due now: stored in its topic, at once
        {"TIMER_DELIVER_MS": "1"},
        {"TIMER_DELAY_MS": "0"},
        {"TIMER_DELAY_SEC": "-5"},
        {"TIMER_DELAY_MS": "500", "DELAY": "2"},  # the level wins (the store drops TIMER_*)
        {"TIMER_DELAY_MS": "500", "DELAY": "later"},  # the store refuses the DELAY by name
        {"TIMER_DELAY_MS": "500", "TIMER_OUT_MS": "123"},  # timed before: not again
    ],
)
def test_unchanged_when_nothing_future_is_asked(props: dict[str, str]) -> None:
    m = msg(**props)
    assert route_timer(m, NOW, POLICY) is m


def test_delay_zero_still_times_the_message() -> None:
    assert routed(msg(DELAY="0", TIMER_DELAY_MS="500")).topic == TIMER_TOPIC


def test_half_and_rollback_records_are_left_alone_commit_is_timed() -> None:
    for flag in (SysFlag.TRANSACTION_PREPARED, SysFlag.TRANSACTION_ROLLBACK):
        m = msg(flag, TIMER_DELAY_MS="500")
        assert route_timer(m, NOW, POLICY) is m
    assert routed(msg(SysFlag.TRANSACTION_COMMIT, TIMER_DELAY_MS="500")).topic == TIMER_TOPIC


def test_the_timer_topic_itself_is_not_routed_again() -> None:
    m = MessageToStore(TIMER_TOPIC, 0, b"", encode_properties({"TIMER_DELAY_MS": "500"}))
    assert route_timer(m, NOW, POLICY) is m


def test_past_the_longest_delay_is_illegal_and_names_the_limit() -> None:
    r = refused(msg(TIMER_DELAY_SEC="61"))
    assert r.status is TimerStatus.ILLEGAL
    assert "TIMER_DELAY_SEC=61" in r.remark and "60000 ms" in r.remark
    assert "timerMaxDelaySec=60" in r.remark
    assert routed(msg(TIMER_DELAY_SEC="60")).topic == TIMER_TOPIC  # the limit itself is fine
    assert refused(msg(TIMER_DELIVER_MS=str(NOW + 60_001))).status is TimerStatus.ILLEGAL


@pytest.mark.parametrize(
    "raw", ["soon", "", "1.5", " 5", "5\n", "5_000", "\u0665", "99999999999999999999"]
)
def test_a_value_that_is_not_a_java_long_is_illegal(raw: str) -> None:
    r = refused(msg(TIMER_DELAY_MS=raw))
    assert r.status is TimerStatus.ILLEGAL and f"TIMER_DELAY_MS={raw!r}" in r.remark


def test_turned_off_refuses_every_timer_request() -> None:
    off = TimerPolicy(enabled=False)
    r = refused(msg(TIMER_DELAY_MS="500"), off)
    assert r.status is TimerStatus.NOT_ENABLED and "timerWheelEnable=false" in r.remark
    assert route_timer(m := msg(), NOW, off) is m


def test_requests_timer() -> None:
    assert requests_timer(encode_properties({"TIMER_DELIVER_MS": "5"}))
    assert not requests_timer(encode_properties({"TIMER_OUT_MS": "5"}))
    assert not requests_timer(encode_properties({"K": "TIMER_DELAY_MS"}))


def test_a_delay_level_drops_timer_properties_in_the_store() -> None:
    levels = parse_delay_levels("1s 5s")
    m = msg(DELAY="9", TIMER_DELAY_MS="5", TIMER_DELAY_SEC="1", TIMER_DELIVER_MS="1", TAGS="t")
    out = route_delayed(m, levels)
    assert isinstance(out, MessageToStore) and out.queue_id == 1  # clamped to the last level
    p = decode_properties(out.properties)
    assert not any(k.startswith("TIMER_") for k in p)
    assert (p["TAGS"], p["DELAY"], p["REAL_TOPIC"]) == ("t", "2", "Orders")


def test_timer_properties_without_a_level_pass_the_store() -> None:
    # Refused until the timer existed; now a past time is simply stored in its topic.
    m = msg(TIMER_DELIVER_MS="1")
    assert route_delayed(m, parse_delay_levels("1s")) is m
    bad = route_delayed(msg(DELAY="x", TIMER_DELAY_MS="5"), parse_delay_levels("1s"))
    assert isinstance(bad, PutResult) and "DELAY" in (bad.remark or "")


# -- the wheel --------------------------------------------------------------------------------


def test_wheel_gives_slots_in_time_order_once_they_have_passed() -> None:
    w = TimerWheel(100)
    w.add(500, (0, 10, 1))
    w.add(300, (1, 20, 1))
    w.add(500, (2, 30, 1))
    assert w.count == 3 and w.next_due() == 400
    assert w.pop_due(399) is None
    assert w.pop_due(400) == (300, [(1, 20, 1)])
    assert w.pop_due(599) is None
    out_ms, entries = w.pop_due(10_000) or (0, [])
    assert (out_ms, entries) == (500, [(0, 10, 1), (2, 30, 1)])
    w.put_back(out_ms, entries[1:])  # the store refused the second: it stays first in line
    w.add(500, (3, 40, 1))
    assert w.pop_due(600) == (500, [(2, 30, 1), (3, 40, 1)])
    assert w.count == 4  # popped entries count until done
    for e in [(1, 20, 1), (0, 10, 1), (2, 30, 1), (3, 40, 1)]:
        w.done(e)
    assert w.count == 0 and w.next_due() is None and w.pop_due(10**15) is None


def test_checkpoint_names_chunks_still_pending_and_round_trips() -> None:
    w = TimerWheel(1000)
    far, near = 9_000, 2_000
    for off in range(3 * PROGRESS_CHUNK + 5):
        w.add(far if off in (7, 2 * PROGRESS_CHUNK + 1) else near, (off, off * 100, 100))
    w.next_offset = 3 * PROGRESS_CHUNK + 5
    _, due = w.pop_due(5_000) or (0, [])
    for e in due:
        w.done(e)
    data = w.checkpoint()
    assert data["readTimeMs"] == far and data["nextOffset"] == 3 * PROGRESS_CHUNK + 5
    assert data["pendingChunks"] == [[0, 1], [2, 3]]
    cp = TimerCheckpoint.decode(data)
    assert cp.read_time_ms == far and cp.next_offset == w.next_offset
    assert cp.pending == ((0, PROGRESS_CHUNK), (2 * PROGRESS_CHUNK, 3 * PROGRESS_CHUNK))


def test_adjacent_pending_chunks_merge_and_the_last_stops_at_next_offset() -> None:
    w = TimerWheel(1000)
    for off in (5, PROGRESS_CHUNK + 5, 2 * PROGRESS_CHUNK + 5):
        w.add(1000, (off, 0, 1))
    w.next_offset = 2 * PROGRESS_CHUNK + 6
    cp = TimerCheckpoint.decode(w.checkpoint())
    assert cp.pending == ((0, 2 * PROGRESS_CHUNK + 6),)


@pytest.mark.parametrize(
    "data",
    [None, {}, {"nextOffset": "x"}, {"pendingChunks": [[1]]}, {"pendingChunks": 5},
     {"readTimeMs": [1]}],
)  # fmt: skip
def test_a_missing_or_malformed_checkpoint_means_start_over(data: dict[str, object] | None) -> None:
    cp = TimerCheckpoint.decode(data)
    assert cp == TimerCheckpoint() and cp.next_offset == 0 and cp.pending == ()


def test_broker_properties_keys_reach_the_store_settings() -> None:
    from rmqkit.server.properties import settings_from_properties

    warnings: list[str] = []
    s = settings_from_properties(
        {"timerWheelEnable": "false", "timerMaxDelaySec": "60", "timerPrecisionMs": "250"},
        warn=warnings.append,
    )
    assert warnings == []
    assert (s.store.timer_wheel_enable, s.store.timer_max_delay_sec) == (False, 60)
    assert s.store.timer_precision_ms == 200
    d = StoreSettings()
    assert (d.timer_wheel_enable, d.timer_max_delay_sec, d.timer_precision_ms) == (
        True, 3 * 24 * 3600, 1000,
    )  # fmt: skip
