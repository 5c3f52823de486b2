"""Client-side message ids (UNIQ_KEY), laid out as RocketMQ's `MessageClientIDSetter` does:

    ip(4) pid(2) client_hash(4) | ms_since_month_start(4) counter(2)   -> 32 upper-case hex chars

The first 10 bytes are fixed per process; the last 6 change per message, so ids sort roughly by
time within a month and stay unique across processes.
"""

from __future__ import annotations

import itertools
import os
import random
import socket
import struct
import time
from datetime import UTC, datetime


def local_ip() -> str:
    """This host's IPv4 address as its name resolves, else loopback."""
    try:
        ip = socket.gethostbyname(socket.gethostname())
        socket.inet_aton(ip)
        return ip
    except OSError:
        return "127.0.0.1"


class UniqIdGenerator:
    """Makes UNIQ_KEY values; one per process is enough."""

    def __init__(self) -> None:
        head = socket.inet_aton(local_ip()) + struct.pack(">H", os.getpid() & 0xFFFF)
        head += struct.pack(">I", random.getrandbits(32))
        self._head = head.hex().upper()
        self._counter = itertools.count(random.randrange(0x10000))
        self._month_start_ms = 0
        self._next_month_ms = 0
        self._last_ms = -1
        self._last_prefix = ""
        """The id up to the counter for `_last_ms`: ids made in one millisecond share it."""

    def _roll_month(self, now_ms: int) -> None:
        now = datetime.fromtimestamp(now_ms / 1000, UTC)
        start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        nxt = (
            start.replace(year=start.year + 1, month=1)
            if start.month == 12
            else start.replace(month=start.month + 1)
        )
        self._month_start_ms = int(start.timestamp() * 1000)
        self._next_month_ms = int(nxt.timestamp() * 1000)

    def next_id(self) -> str:
        now_ms = int(time.time() * 1000)
        if now_ms != self._last_ms:
            if now_ms >= self._next_month_ms:
                self._roll_month(now_ms)
            # Formatting the tail as hex directly: a third of the cost of pack + hex + upper.
            ms = (now_ms - self._month_start_ms) & 0xFFFFFFFF
            self._last_prefix = f"{self._head}{ms:08X}"
            self._last_ms = now_ms
        return f"{self._last_prefix}{next(self._counter) & 0xFFFF:04X}"


_default = UniqIdGenerator()


def new_uniq_id() -> str:
    """A fresh UNIQ_KEY."""
    return _default.next_id()
