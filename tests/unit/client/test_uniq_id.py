"""UNIQ_KEY message ids: RocketMQ's layout, unique, and valid late in a long month."""

from __future__ import annotations

import struct
from datetime import UTC, datetime

import pytest

from rmqkit.client.uniq_id import UniqIdGenerator, new_uniq_id


def test_layout_and_uniqueness() -> None:
    ids = [new_uniq_id() for _ in range(1000)]
    assert len(set(ids)) == 1000
    assert all(len(i) == 32 and i == i.upper() and int(i, 16) >= 0 for i in ids)
    assert len({i[:20] for i in ids}) == 1  # ip, pid, client hash: fixed per process


def test_tail_is_ms_since_month_start_and_counter(monkeypatch: pytest.MonkeyPatch) -> None:
    gen = UniqIdGenerator()
    now = datetime(2026, 1, 31, 23, 0, tzinfo=UTC)  # past 2**31 ms into the month
    monkeypatch.setattr("rmqkit.client.uniq_id.time.time", lambda: now.timestamp())
    tail = gen.next_id()[20:]
    ms = int((now - now.replace(day=1, hour=0)).total_seconds() * 1000)
    assert ms > 2**31
    # Java keeps the low 32 bits (an int that overflowed); the counter follows in 2 bytes.
    assert tail[:8] == struct.pack(">I", ms & 0xFFFFFFFF).hex().upper()
    assert int(tail[8:], 16) < 0x10000
