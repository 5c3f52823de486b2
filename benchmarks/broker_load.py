"""The load generator of `broker_bench.py`: request frames and callback-driven client protocols.

No coroutine per request: `Pipeline` keeps a window of requests in flight on one connection, each
response sending the next, and `Consumer` keeps one long-polling pull per queue. Header bytes are
cut from a template, so building a frame is a few concatenations and one client core outruns
one broker core.
"""

from __future__ import annotations

import asyncio
import os
import struct
import time
from collections.abc import Callable
from typing import Any, cast

import orjson

from rmqkit.common.properties import encode_properties
from rmqkit.protocol.codes import RequestCode, ResponseCode

TOPIC = "BenchTopic"
E2E_TOPIC = "BenchE2E"
GROUP = "BenchConsumer"
QUEUES = 8
BODY = os.urandom(1024)
"""1 KiB, incompressible."""
FRAME_PREFIX = struct.Struct(">ii")  # length, serialize type << 24 | header length
TS = struct.Struct(">q")
RECORD_HEAD = struct.Struct(">i32xi")  # total_size, then sys_flag at 36
BODY_AT_V4 = 88
"""Body offset in a record with IPv4 born and store hosts (total_size..body_length)."""
HOST_V6_BITS = 0x30
SUCCESS = int(ResponseCode.SUCCESS)
PULL_NOT_FOUND = int(ResponseCode.PULL_NOT_FOUND)
OPAQUE_MARK = 987654321987
UNIQ_MARK = "@UNIQ@"


# -- request frames ---------------------------------------------------------------------------


def _split_template(header: bytes, marks: list[bytes]) -> list[bytes]:
    """Cut an encoded header at each mark, in order: parts[0] mark0 parts[1] mark1 parts[2]."""
    parts: list[bytes] = []
    rest = header
    for m in marks:
        head, sep, rest = rest.partition(m)
        assert sep, f"template mark {m!r} missing"
        parts.append(head)
    parts.append(rest)
    return parts


class SendFrames:
    """SEND_MESSAGE_V2 / SEND_BATCH_MESSAGE frames to one topic, queues round-robin.

    Each message gets a fresh UNIQ_KEY (indexed by the broker, as every Java send is), TAGS and
    KEYS; the header bytes are a template cut at the opaque and the UNIQ_KEY, so building a
    frame is a few concatenations.
    """

    def __init__(self, topic: str, *, batch: int = 0, stamp: bool = False) -> None:
        self.batch = batch
        self.stamp = stamp
        self.seq = 0
        self.uniq_base = f"7F000001{os.getpid() & 0xFFFF:04X}18B4AAC2"
        born = str(int(time.time() * 1000))
        self.templates: list[list[bytes]] = []
        for q in range(QUEUES):
            props = (
                ""
                if batch
                else encode_properties(
                    {"TAGS": "TagA", "KEYS": "order", "UNIQ_KEY": UNIQ_MARK, "WAIT": "true"}
                )
            )
            ext = {
                "a": "BenchProducer", "b": topic, "c": "TBW102", "d": "4", "e": str(q),
                "f": "0", "g": born, "h": "0", "i": props, "j": "0", "k": "false",
                "m": "true" if batch else "false",
            }  # fmt: skip
            code = RequestCode.SEND_BATCH_MESSAGE if batch else RequestCode.SEND_MESSAGE_V2
            header = orjson.dumps(
                {
                    "code": int(code), "language": "JAVA", "version": 479,
                    "opaque": OPAQUE_MARK, "flag": 0, "extFields": ext,
                    "serializeTypeCurrentRPC": "JSON",
                }
            )  # fmt: skip
            marks = [str(OPAQUE_MARK).encode()] + ([] if batch else [UNIQ_MARK.encode()])
            self.templates.append(_split_template(header, marks))
        # Batch entries: total_size magic crc flag body_length, body, properties_length, props.
        p = encode_properties({"TAGS": "TagA", "KEYS": "order", "UNIQ_KEY": UNIQ_MARK})
        pre, post = p.encode().split(UNIQ_MARK.encode())
        self._entry_props = (pre, post)
        self._entry_head = (
            struct.Struct(">iiiii").pack(
                20 + len(BODY) + 2 + len(pre) + 32 + len(post), 0, 0, 0, len(BODY)
            )
            + BODY
            + struct.pack(">h", len(pre) + 32 + len(post))
            + pre
        )

    def _uniq(self) -> bytes:
        self.seq += 1
        return f"{self.uniq_base}{self.seq:012X}".encode()

    def frame(self, opaque: int) -> bytes:
        t = self.templates[opaque % QUEUES]
        if self.batch:
            head = t[0] + str(opaque).encode() + t[1]
            eh, post = self._entry_head, self._entry_props[1]
            body = b"".join([eh + self._uniq() + post for _ in range(self.batch)])
        else:
            head = t[0] + str(opaque).encode() + t[1] + self._uniq() + t[2]
            body = TS.pack(time.monotonic_ns()) + BODY[8:] if self.stamp else BODY
        return FRAME_PREFIX.pack(4 + len(head) + len(body), len(head)) + head + body


def pull_frame(opaque: int, queue_id: int, offset: int) -> bytes:
    header = orjson.dumps(
        {
            "code": int(RequestCode.PULL_MESSAGE), "language": "JAVA", "version": 479,
            "opaque": opaque, "flag": 0, "serializeTypeCurrentRPC": "JSON",
            "extFields": {
                "consumerGroup": GROUP, "topic": E2E_TOPIC, "queueId": str(queue_id),
                "queueOffset": str(offset), "maxMsgNums": "32", "sysFlag": "7",
                "commitOffset": str(offset), "suspendTimeoutMillis": "15000",
                "subscription": "*", "subVersion": "0", "expressionType": "TAG",
            },
        }
    )  # fmt: skip
    return FRAME_PREFIX.pack(4 + len(header), len(header)) + header


# -- callback-driven clients ------------------------------------------------------------------


class Framed(asyncio.Protocol):
    """Cuts responses out of the stream and hands (header dict, body view) to `_on_response`."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.errors = 0
        self.first_error = ""
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        n = len(buf)
        pos = 0
        now = time.perf_counter_ns()
        view = memoryview(buf)
        try:
            while n - pos >= 8:
                length, hlen = FRAME_PREFIX.unpack_from(buf, pos)
                end = pos + 4 + length
                if end > n:
                    break
                hlen &= 0xFFFFFF
                h = orjson.loads(view[pos + 8 : pos + 8 + hlen])
                self._on_response(h, view[pos + 8 + hlen : end], now)
                pos = end
        finally:
            view.release()
        if pos:
            del buf[:pos]
        self._after_batch(now)

    def _error(self, h: dict[str, Any]) -> None:
        self.errors += 1
        if not self.first_error:
            self.first_error = f"code {h.get('code')}: {h.get('remark')}"

    def _on_response(self, h: dict[str, Any], body: memoryview, now: int) -> None:
        raise NotImplementedError

    def _after_batch(self, now: int) -> None:
        pass


class Pipeline(Framed):
    """Keeps `window` requests in flight until the deadline; records each ack latency."""

    def __init__(self, make: Callable[[int], bytes], window: int, per_request: int = 1) -> None:
        super().__init__()
        self.make = make
        self.window = window
        self.per_request = per_request
        self.sent_at: dict[int, int] = {}
        self.lat_ns: list[int] = []
        self.acked = 0
        self.opaque = 0
        self.deadline = 0
        self.to_send = 0
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def _send(self, count: int, now: int) -> None:
        assert self.transport is not None
        frames = []
        sent_at = self.sent_at
        for _ in range(count):
            self.opaque += 1
            sent_at[self.opaque] = now
            frames.append(self.make(self.opaque))
        self.transport.write(b"".join(frames))

    def run(self, seconds: float) -> asyncio.Future[None]:
        now = time.perf_counter_ns()
        self.deadline = now + int(seconds * 1e9)
        self._send(self.window, now)
        return self.done

    def _on_response(self, h: dict[str, Any], body: memoryview, now: int) -> None:
        sent = self.sent_at.pop(h["opaque"], None)
        if sent is None:
            return
        if h["code"] != SUCCESS:
            self._error(h)
        else:
            self.acked += self.per_request
        self.lat_ns.append(now - sent)
        self.to_send += 1

    def _after_batch(self, now: int) -> None:
        if self.to_send and now < self.deadline:
            self._send(self.to_send, now)
        self.to_send = 0
        if not self.sent_at and not self.done.done():
            self.done.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if not self.done.done():
            self.done.set_exception(ConnectionError(f"connection lost: {exc}"))


class Consumer(Framed):
    """One long-polling pull per queue, re-issued from nextBeginOffset as each answer comes."""

    def __init__(self) -> None:
        super().__init__()
        self.offsets = [0] * QUEUES
        self.queue_of: dict[int, int] = {}
        self.opaque = 1 << 30
        self.received = 0
        self.lat_ns: list[int] = []
        self.last_ns = 0
        self.out: list[bytes] = []
        self.stopping = False

    def start(self) -> None:
        for q in range(QUEUES):
            self._pull(q)
        self._flush()

    def _pull(self, q: int) -> None:
        self.opaque += 1
        self.queue_of[self.opaque] = q
        self.out.append(pull_frame(self.opaque, q, self.offsets[q]))

    def _flush(self) -> None:
        if self.out and self.transport is not None and not self.stopping:
            self.transport.write(b"".join(self.out))
        self.out.clear()

    def _on_response(self, h: dict[str, Any], body: memoryview, now: int) -> None:
        q = self.queue_of.pop(h["opaque"], None)
        if q is None:
            return
        code = h["code"]
        mono = time.monotonic_ns()
        if code == SUCCESS:
            pos, n, lat = 0, len(body), self.lat_ns
            count = 0
            while pos < n:
                size, sys_flag = RECORD_HEAD.unpack_from(body, pos)
                if not sys_flag & HOST_V6_BITS:
                    lat.append(mono - TS.unpack_from(body, pos + BODY_AT_V4)[0])
                count += 1
                pos += size
            self.received += count
            self.last_ns = now
        elif code != PULL_NOT_FOUND:
            self._error(h)
        ext = h.get("extFields") or {}
        self.offsets[q] = int(ext.get("nextBeginOffset", self.offsets[q]))
        self._pull(q)

    def _after_batch(self, now: int) -> None:
        self._flush()
