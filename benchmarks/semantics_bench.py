"""Broker semantics benchmark (issue 5): delayed messages, timer accuracy and scale, transactional
sends and a retry storm, through the real protocol on loopback.

    python benchmarks/semantics_bench.py [--quick] [--json FILE] [--phases plain,timer,...]
                                         [--storm N] [--timer-pending N]

The broker runs as users run it, `rmqkit serve --config broker.properties` in a subprocess, with
18 shortened delay levels (100 ms .. 1.8 s), `timerPrecisionMs=100` and short transaction
timeouts; this process drives it with the callback clients of `broker_load.py`. Phases:

- plain: pipelined 1 KiB sends, 64 in flight: the baseline the other rates are compared with;
- timer: the broker otherwise idle, 400 timer messages a second for a few seconds asking for
  0.5-3 s: lateness of each arrival against the time asked for and against the end of its
  100 ms slot (the earliest it may arrive), p50/p99;
- delay: 100,000 sends spread over the 18 levels, received by a consumer started first: send
  rate, delivery rate (all delivered / time from first send to last arrival), lateness;
- tx: pipelined half messages, each committed by a one-way END_TRANSACTION as its answer comes:
  committed messages per second until all are visible, against plain sends;
- storm: a preloaded topic whose every message group StormG fails once (CONSUMER_SEND_MSG_BACK,
  back after level 3 through %RETRY%StormG), while group NormalG receives paced traffic on
  another topic: NormalG's delivered rate and latency during the storm against without it;
- timer_scale: no network: a child process writes N timer messages through the send path's
  routing (`route_timer`) into a FileMessageStore and lets the TimerService index them;
  RssAnon before and after, and the indexing rate.

Targets print PASS or MISS and never change the exit status.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from broker_bench import RMQKIT, WORK_ROOT, Server, _connect, _wait_line
from broker_load import (
    BODY,
    BODY_AT_V4,
    FRAME_PREFIX,
    HOST_V6_BITS,
    PULL_NOT_FOUND,
    SUCCESS,
    Framed,
    Pipeline,
)
from rmqkit.common.properties import encode_properties
from rmqkit.protocol.codes import RequestCode, ResponseCode
from rmqkit.protocol.command import RemotingCommand
from rmqkit.remoting.client import RemotingClient

PHASES = ("plain", "timer", "delay", "tx", "storm", "timer_scale")
QUEUES = 4
WINDOW = 64
LEVELS_MS = tuple(100 * i for i in range(1, 19))
PRECISION_MS = 100
STAMP = struct.Struct(">qq")  # due (monotonic ns), due (epoch ms), at the start of every body
RECORD = struct.Struct(">i24xq")  # total_size, then phys_offset at 28
RECONSUME_AT = 72
TARGET_TIMER_SLOT_P99_MS = 100.0
TARGET_DELAY_RATIO = 0.4
TARGET_TX_RATIO = 0.25
TARGET_STORM_RATIO = 0.9
CONF = """brokerName=semantics
listenPort=0
storePathRootDir={root}
defaultTopicQueueNums={queues}
messageDelayLevel={levels}
timerPrecisionMs={precision}
transactionTimeOut=3000
transactionCheckInterval=1000
"""


@dataclass(slots=True)
class Plan:
    plain_s: float = 3.0
    timer_s: float = 4.0
    timer_rate: int = 400
    delay_msgs: int = 100_000
    tx_s: float = 4.0
    storm_msgs: int = 1_000_000
    """The issue's 1M: about two minutes of the run on the 2-vCPU development VM."""
    normal_share: float = 0.25
    """NormalG's paced rate, as a share of the plain send rate measured first."""
    normal_s: float = 8.0
    timer_pending: int = 1_000_000
    phases: tuple[str, ...] = PHASES


QUICK = Plan(plain_s=1.5, timer_s=2.0, delay_msgs=20_000, tx_s=1.5, storm_msgs=40_000,
             normal_s=3.0, timer_pending=200_000)  # fmt: skip


@dataclass(slots=True)
class Results:
    machine: dict[str, Any] = field(default_factory=dict)
    figures: dict[str, dict[str, float]] = field(default_factory=dict)
    targets: list[tuple[str, bool, str]] = field(default_factory=list)


# -- frames -----------------------------------------------------------------------------------


class Frames:
    """SEND_MESSAGE_V2 frames to one topic, queues round-robin; the body starts with STAMP."""

    def __init__(self, topic: str, props: Callable[[int], dict[str, str]] | None = None,
                 group: str = "SemanticsPG", sys_flag: int = 0) -> None:  # fmt: skip
        self.topic, self.props, self.group, self.sys_flag = topic, props, group, sys_flag
        self.seq = 0
        self.uniq = f"7F000001{os.getpid() & 0xFFFF:04X}5E3A{int(time.time()) & 0xFFFF:04X}"
        self.delays_ms: dict[int, int] = {}

    def frame(self, opaque: int) -> bytes:
        self.seq += 1
        props = {"UNIQ_KEY": f"{self.uniq}{self.seq:012X}", "WAIT": "true"}
        delay = 0
        if self.props is not None:
            extra = self.props(self.seq)
            delay = int(extra.pop("_delay_ms", "0"))
            props.update(extra)
        self.delays_ms[opaque] = delay
        ext = {"a": self.group, "b": self.topic, "c": "TBW102", "d": str(QUEUES),
               "e": str(self.seq % QUEUES), "f": str(self.sys_flag),
               "g": str(int(time.time() * 1000)), "h": "0", "i": encode_properties(props),
               "j": "0", "k": "false", "m": "false"}  # fmt: skip
        body = STAMP.pack(time.monotonic_ns() + delay * 1_000_000,
                          int(time.time() * 1000) + delay) + BODY[16:]  # fmt: skip
        return _frame(RequestCode.SEND_MESSAGE_V2, opaque, ext, body)


def _frame(code: int, opaque: int, ext: dict[str, str], body: bytes = b"", flag: int = 0) -> bytes:
    header = orjson.dumps({"code": int(code), "language": "JAVA", "version": 479,
                           "opaque": opaque, "flag": flag, "extFields": ext,
                           "serializeTypeCurrentRPC": "JSON"})  # fmt: skip
    return FRAME_PREFIX.pack(4 + len(header) + len(body), len(header)) + header + body


def record_properties(body: memoryview, pos: int) -> str:
    """The properties string of the record at `pos` (IPv4 hosts)."""
    body_len = struct.unpack_from(">i", body, pos + BODY_AT_V4 - 4)[0]
    at = pos + BODY_AT_V4 + body_len
    at += 1 + body[at]  # topic length (1 byte) and topic
    props_len = struct.unpack_from(">h", body, at)[0]
    return bytes(body[at + 2 : at + 2 + props_len]).decode()


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else 0.0


# -- clients ----------------------------------------------------------------------------------


class Reader(Framed):
    """Long-polls queues of one group from given offsets; keeps (due ns, due epoch ms, arrival
    ns, arrival epoch ms) of every record and calls `on_record(body, pos)` if given."""

    def __init__(self, group: str, queues: list[tuple[str, int, int]],
                 on_record: Callable[[memoryview, int], None] | None = None) -> None:  # fmt: skip
        super().__init__()
        self.group = group
        self.queues = [[t, q, off] for t, q, off in queues]
        self.on_record = on_record
        self.queue_of: dict[int, int] = {}
        self.opaque = 1 << 30
        self.arrivals: list[tuple[int, int, int, int]] = []
        self.received = 0
        self.stopping = False

    def start(self) -> None:
        for i in range(len(self.queues)):
            self._pull(i)

    def _pull(self, i: int) -> None:
        if self.stopping or self.transport is None or self.transport.is_closing():
            return
        self.opaque += 1
        self.queue_of[self.opaque] = i
        topic, qid, off = self.queues[i]
        self.transport.write(_frame(RequestCode.PULL_MESSAGE, self.opaque, {
            "consumerGroup": self.group, "topic": topic, "queueId": str(qid),
            "queueOffset": str(off), "maxMsgNums": "32", "sysFlag": "6", "commitOffset": "0",
            "suspendTimeoutMillis": "15000", "subscription": "*", "subVersion": "0",
            "expressionType": "TAG",
        }))  # fmt: skip

    def _on_response(self, h: dict[str, Any], body: memoryview, now: int) -> None:
        i = self.queue_of.pop(h["opaque"], None)
        if i is None:
            return
        code = h["code"]
        if code == SUCCESS:
            mono, epoch = time.monotonic_ns(), time.time_ns() // 1_000_000
            pos = 0
            while pos < len(body):
                size = RECORD.unpack_from(body, pos)[0]
                sys_flag = struct.unpack_from(">i", body, pos + 36)[0]
                if not sys_flag & HOST_V6_BITS:
                    due_ns, due_ms = STAMP.unpack_from(body, pos + BODY_AT_V4)
                    self.arrivals.append((due_ns, due_ms, mono, epoch))
                if self.on_record is not None:
                    self.on_record(body, pos)
                self.received += 1
                pos += size
        elif code not in (PULL_NOT_FOUND, ResponseCode.PULL_RETRY_IMMEDIATELY,
                          ResponseCode.PULL_OFFSET_MOVED):  # fmt: skip
            # Not there yet (a retry topic before its first message): ask again shortly.
            asyncio.get_running_loop().call_later(0.1, self._pull, i)
            return
        ext = h.get("extFields") or {}
        self.queues[i][2] = int(ext.get("nextBeginOffset", self.queues[i][2]))
        self._pull(i)


class Paced(Framed):
    """Sends `rate` frames a second (in 10 ms ticks) until stopped; counts acks."""

    def __init__(self, make: Callable[[int], bytes], rate: int) -> None:
        super().__init__()
        self.make, self.rate = make, rate
        self.opaque = 0
        self.acked = 0
        self.running = True

    async def run(self, seconds: float) -> None:
        assert self.transport is not None
        t0 = time.monotonic()
        sent = 0
        while self.running and time.monotonic() - t0 < seconds:
            due = int((time.monotonic() - t0) * self.rate)
            if due > sent:
                frames = []
                for _ in range(due - sent):
                    self.opaque += 1
                    frames.append(self.make(self.opaque))
                self.transport.write(b"".join(frames))
                sent = due
            await asyncio.sleep(0.01)

    def _on_response(self, h: dict[str, Any], body: memoryview, now: int) -> None:
        if h["code"] == SUCCESS:
            self.acked += 1
        else:
            self._error(h)


class TxPipeline(Pipeline):
    """Pipelined half messages; each answer sends the one-way END_TRANSACTION that commits it."""

    def __init__(self, frames: Frames, window: int) -> None:
        super().__init__(frames.frame, window)
        self.group = frames.group
        self.ends: list[bytes] = []

    def _on_response(self, h: dict[str, Any], body: memoryview, now: int) -> None:
        ext = h.get("extFields") or {}
        if h["code"] == SUCCESS and "msgId" in ext:
            self.ends.append(_frame(RequestCode.END_TRANSACTION, 0, {
                "producerGroup": self.group, "tranStateTableOffset": ext["queueOffset"],
                "commitLogOffset": str(int(ext["msgId"][-16:], 16)), "commitOrRollback": "8",
                "fromTransactionCheck": "false", "msgId": ext["msgId"],
            }, flag=0x2))  # fmt: skip
        super()._on_response(h, body, now)

    def _after_batch(self, now: int) -> None:
        if self.ends and self.transport is not None:
            self.transport.write(b"".join(self.ends))
            self.ends.clear()
        super()._after_batch(now)


# -- the broker -------------------------------------------------------------------------------


def start_broker(work: Path) -> Server:
    data = work / "broker"
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    conf = data / "broker.properties"
    conf.write_text(CONF.format(root=data / "store", queues=QUEUES, precision=PRECISION_MS,
                                levels=" ".join(f"{ms}ms" for ms in LEVELS_MS)))  # fmt: skip
    log = data / "broker.log"
    proc = subprocess.Popen(
        [str(RMQKIT), "serve", "--config", str(conf)],
        stdout=subprocess.PIPE, stderr=log.open("wb"), cwd=str(data),
    )  # fmt: skip
    m = _wait_line(proc, re.compile(r"broker \S+ listening on (\S+:\d+)"), "the broker")
    return Server(proc, m.group(1).rstrip(","), log)


async def call(client: RemotingClient, addr: str, code: int, **ext: Any) -> RemotingCommand:
    cmd = RemotingCommand(code, ext_fields={k: str(v) for k, v in ext.items()})
    return await client.invoke(addr, cmd, 10.0)


async def create_topic(client: RemotingClient, addr: str, topic: str) -> None:
    r = await call(client, addr, RequestCode.UPDATE_AND_CREATE_TOPIC, topic=topic,
                   defaultTopic="TBW102", readQueueNums=QUEUES, writeQueueNums=QUEUES, perm=6,
                   topicFilterType="SINGLE_TAG")  # fmt: skip
    if r.code != SUCCESS:
        raise RuntimeError(f"cannot create {topic}: {r.remark}")


async def ends(client: RemotingClient, addr: str, topic: str, queues: int = QUEUES) -> list[int]:
    out = []
    for q in range(queues):
        r = await call(client, addr, RequestCode.GET_MAX_OFFSET, topic=topic, queueId=q)
        out.append(int(r.ext_fields.get("offset", 0)) if r.code == SUCCESS else 0)
    return out


async def reader(addr: str, group: str, topic: str, client: RemotingClient,
                 on_record: Callable[[memoryview, int], None] | None = None) -> Reader:  # fmt: skip
    """A started Reader of `topic` from its current end."""
    starts = await ends(client, addr, topic)
    r = await _connect(addr, lambda: Reader(group, [(topic, q, o) for q, o in enumerate(starts)],
                                            on_record))  # fmt: skip
    assert isinstance(r, Reader)
    r.start()
    return r


async def drain(r: Reader, count: int, timeout_s: float) -> None:
    until = time.monotonic() + timeout_s
    while r.received < count and time.monotonic() < until:  # noqa: ASYNC110
        await asyncio.sleep(0.01)


def _close(*protos: Framed) -> None:
    for p in protos:
        if isinstance(p, Reader):
            p.stopping = True
        if p.transport is not None:
            p.transport.close()


# -- phases -----------------------------------------------------------------------------------


async def pipelined(addr: str, frames: Frames, seconds: float, window: int = WINDOW) -> Pipeline:
    proto = await _connect(addr, lambda: Pipeline(frames.frame, window))
    assert isinstance(proto, Pipeline)
    await proto.run(seconds)
    _close(proto)
    return proto


async def bench_plain(addr: str, plan: Plan) -> dict[str, float]:
    t0 = time.perf_counter()
    p = await pipelined(addr, Frames("SemPlain"), plan.plain_s)
    wall = time.perf_counter() - t0
    lat = [v / 1000 for v in p.lat_ns]
    return {"msgs": p.acked, "msgs_s": p.acked / wall, "p50_us": _pct(lat, 0.5),
            "p99_us": _pct(lat, 0.99), "errors": p.errors}  # fmt: skip


async def bench_timer(addr: str, plan: Plan, client: RemotingClient) -> dict[str, float]:
    """Paced timer sends to an otherwise idle broker; lateness against time and slot end."""
    def props(seq: int) -> dict[str, str]:
        delay = 500 + (seq * 7919) % 2500
        return {"TIMER_DELAY_MS": str(delay), "_delay_ms": str(delay)}

    slot_ends: list[tuple[int, int]] = []  # (slot end, arrival), epoch ms

    def slot_end(body: memoryview, pos: int) -> None:
        props = record_properties(body, pos)
        out = props.split("TIMER_OUT_MS\x01", 1)[1].split("\x02", 1)[0]
        slot_ends.append((int(out) + PRECISION_MS, time.time_ns() // 1_000_000))

    r = await reader(addr, "SemTimerG", "SemTimer", client, slot_end)
    await asyncio.sleep(0.3)  # the pulls are held before the first message
    sender = await _connect(addr, lambda: Paced(Frames("SemTimer", props).frame, plan.timer_rate))
    assert isinstance(sender, Paced)
    await sender.run(plan.timer_s)
    await drain(r, sender.opaque, 3 + 10)
    _close(sender, r)
    late = [(a - d) / 1e6 for d, _, a, _ in r.arrivals]
    slot = [float(arrival - end) for end, arrival in slot_ends]
    return {"msgs": sender.opaque, "received": r.received, "late_p50_ms": _pct(late, 0.5),
            "late_p99_ms": _pct(late, 0.99), "late_max_ms": max(late, default=0.0),
            "slot_p50_ms": _pct(slot, 0.5), "slot_p99_ms": _pct(slot, 0.99),
            "early": float(sum(1 for v in slot if v < -1)),
            "lost": float(max(0, sender.opaque - r.received)), "errors": sender.errors}  # fmt: skip


async def bench_delay(addr: str, plan: Plan, client: RemotingClient) -> dict[str, float]:
    """Sends spread over every level at full speed; delivery rate and lateness."""
    def props(seq: int) -> dict[str, str]:
        level = 1 + seq % len(LEVELS_MS)
        return {"DELAY": str(level), "_delay_ms": str(LEVELS_MS[level - 1])}

    r = await reader(addr, "SemDelayG", "SemDelay", client)
    await asyncio.sleep(0.3)
    frames = Frames("SemDelay", props)
    proto = await _connect(addr, lambda: Pipeline(frames.frame, WINDOW))
    assert isinstance(proto, Pipeline)
    t0 = time.perf_counter()
    start_ns = time.monotonic_ns()
    proto.run(3600)  # stopped by count, below
    while proto.acked < plan.delay_msgs and not proto.done.done():  # noqa: ASYNC110
        await asyncio.sleep(0.005)
    proto.deadline = 0
    with contextlib.suppress(ConnectionError):
        await proto.done
    send_s = time.perf_counter() - t0
    await drain(r, proto.acked, 60)
    _close(proto, r)
    last = max((a for _, _, a, _ in r.arrivals), default=start_ns)
    late = [(a - d) / 1e6 for d, _, a, _ in r.arrivals]
    return {"msgs": proto.acked, "send_msgs_s": proto.acked / send_s,
            "delivered": r.received, "delivery_msgs_s": r.received / ((last - start_ns) / 1e9),
            "late_p50_ms": _pct(late, 0.5), "late_p99_ms": _pct(late, 0.99),
            "early": float(sum(1 for v in late if v < 0)), "errors": proto.errors}  # fmt: skip


async def bench_tx(addr: str, plan: Plan, client: RemotingClient) -> dict[str, float]:
    """Half messages committed one-way as fast as the broker answers; rate until visible."""
    before = sum(await ends(client, addr, "SemTx"))
    frames = Frames("SemTx", lambda s: {"TRAN_MSG": "true", "PGROUP": "SemTxPG"},
                    group="SemTxPG", sys_flag=0x4)  # fmt: skip
    proto = await _connect(addr, lambda: TxPipeline(frames, WINDOW))
    assert isinstance(proto, TxPipeline)
    t0 = time.perf_counter()
    await proto.run(plan.tx_s)
    half_s = time.perf_counter() - t0
    until = time.monotonic() + 30
    while time.monotonic() < until:
        visible = sum(await ends(client, addr, "SemTx")) - before
        if visible >= proto.acked:
            break
        await asyncio.sleep(0.01)
    wall = time.perf_counter() - t0
    _close(proto)
    return {"msgs": proto.acked, "half_msgs_s": proto.acked / half_s,
            "committed": float(visible), "committed_msgs_s": visible / wall,
            "errors": proto.errors}  # fmt: skip


async def normal_traffic(
    addr: str, plan: Plan, client: RemotingClient, rate: int
) -> dict[str, float]:
    """NormalG's traffic paced at `rate` for `normal_s`: delivered rate and latency."""
    r = await reader(addr, "NormalG", "SemNormal", client)
    await asyncio.sleep(0.3)
    sender = await _connect(addr, lambda: Paced(Frames("SemNormal").frame, rate))
    assert isinstance(sender, Paced)
    t0 = time.monotonic_ns()
    await sender.run(plan.normal_s)
    t1 = time.monotonic_ns()
    await drain(r, sender.opaque, 10)
    _close(sender, r)
    in_window = sum(1 for _, _, a, _ in r.arrivals if a <= t1)
    lat = [(a - d) / 1e6 for d, _, a, _ in r.arrivals]
    return {"sent": sender.opaque, "delivered_msgs_s": in_window / ((t1 - t0) / 1e9),
            "lat_p50_ms": _pct(lat, 0.5), "lat_p99_ms": _pct(lat, 0.99),
            "lost": float(max(0, sender.opaque - r.received)), "errors": sender.errors}  # fmt: skip


async def preload(addr: str, topic: str, count: int) -> float:
    """`count` messages into `topic` with batches of 32; returns the seconds it took."""
    seq = iter(range(1 << 40))
    uniq = f"7F000001{os.getpid() & 0xFFFF:04X}5707"
    small = BODY[:256]

    def entry() -> bytes:
        props = encode_properties({"UNIQ_KEY": f"{uniq}{next(seq):016X}"}).encode()
        return struct.pack(">iiiii", 20 + len(small) + 2 + len(props), 0, 0, 0,
                           len(small)) + small + struct.pack(">h", len(props)) + props  # fmt: skip

    def frame(opaque: int) -> bytes:
        ext = {"a": "SemStormPG", "b": topic, "c": "TBW102", "d": str(QUEUES),
               "e": str(opaque % QUEUES), "f": "0", "g": str(int(time.time() * 1000)),
               "h": "0", "i": "", "j": "0", "k": "false", "m": "true"}  # fmt: skip
        return _frame(RequestCode.SEND_BATCH_MESSAGE, opaque, ext,
                      b"".join(entry() for _ in range(32)))  # fmt: skip

    proto = await _connect(addr, lambda: Pipeline(frame, 8, 32))
    assert isinstance(proto, Pipeline)
    t0 = time.perf_counter()
    proto.run(3600)
    while proto.acked < count and not proto.done.done():  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    proto.deadline = 0
    with contextlib.suppress(ConnectionError):
        await proto.done
    _close(proto)
    return time.perf_counter() - t0


async def bench_storm(
    addr: str, plan: Plan, client: RemotingClient, plain_msgs_s: float
) -> dict[str, float]:
    """NormalG alone, then during a retry storm of StormG over a preloaded topic."""
    rate = max(100, int(plain_msgs_s * plan.normal_share))
    alone = await normal_traffic(addr, plan, client, rate)
    starts = await ends(client, addr, "SemStorm")
    load_s = await preload(addr, "SemStorm", plan.storm_msgs)
    total = sum(await ends(client, addr, "SemStorm")) - sum(starts)
    backs: list[bytes] = []
    back_proto: list[Framed] = []

    def fail_once(body: memoryview, pos: int) -> None:
        phys = RECORD.unpack_from(body, pos)[1]
        backs.append(_frame(RequestCode.CONSUMER_SEND_MSG_BACK, 0, {
            "offset": str(phys), "group": "StormG", "delayLevel": "0",
            "maxReconsumeTimes": "16"}, flag=0x2))  # fmt: skip

    storm = await _connect(addr, lambda: Reader(
        "StormG", [("SemStorm", q, o) for q, o in enumerate(starts)], fail_once))  # fmt: skip
    retries = await _connect(addr, lambda: Reader("StormG", [("%RETRY%StormG", 0, 0)]))
    assert isinstance(storm, Reader) and isinstance(retries, Reader)
    back_proto.append(storm)

    async def pump() -> None:
        while not storm.stopping:
            if backs and storm.transport is not None:
                storm.transport.write(b"".join(backs))
                backs.clear()
            await asyncio.sleep(0.002)

    t0 = time.monotonic()
    storm.start()
    retries.start()
    pumping = asyncio.get_running_loop().create_task(pump())
    await asyncio.sleep(1.0)  # the storm is under way
    during = await normal_traffic(addr, plan, client, rate)
    during_at = time.monotonic() - t0
    await drain(retries, total, 120)
    storm_s = time.monotonic() - t0
    _close(storm, retries)
    pumping.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await pumping
    return {"storm_msgs": float(total), "normal_rate": float(rate),
            "normal_share": plan.normal_share, "preload_s": load_s, "storm_s": storm_s,
            "storm_msgs_s": retries.received / storm_s, "retried": float(retries.received),
            "storm_still_running": float(storm_s > during_at),
            "normal_alone_msgs_s": alone["delivered_msgs_s"],
            "normal_storm_msgs_s": during["delivered_msgs_s"],
            "normal_ratio": during["delivered_msgs_s"] / alone["delivered_msgs_s"]
            if alone["delivered_msgs_s"] else 0.0,
            "normal_alone_p99_ms": alone["lat_p99_ms"], "normal_storm_p99_ms": during["lat_p99_ms"],
            "normal_alone_p50_ms": alone["lat_p50_ms"], "normal_storm_p50_ms": during["lat_p50_ms"],
            "normal_lost": alone["lost"] + during["lost"]}  # fmt: skip


# -- timer scale (a child process, no network) ------------------------------------------------


def timer_scale(count: int, work: Path) -> dict[str, float]:
    data = work / "timer-scale"
    shutil.rmtree(data, ignore_errors=True)
    out = subprocess.run([sys.executable, __file__, "--timer-scale-child", str(count), str(data)],
                         capture_output=True, text=True, timeout=600)  # fmt: skip
    shutil.rmtree(data, ignore_errors=True)
    for line in out.stdout.splitlines():
        if line.startswith("{"):
            return {k: float(v) for k, v in json.loads(line).items()}
    raise RuntimeError(f"timer scale child failed: {out.stderr[-2000:]}")


def _rss() -> dict[str, float]:
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        k, _, v = line.partition(":")
        if k in ("VmRSS", "RssAnon", "RssFile"):
            out[k] = int(v.split()[0]) / 1024
    return out


async def timer_scale_child(count: int, root: Path) -> None:
    from rmqkit.server.broker.broker import BrokerStats
    from rmqkit.server.broker.timer import TimerService
    from rmqkit.server.store import FileMessageStore, MessageToStore, StoreSettings
    from rmqkit.server.store.timer import TimerPolicy, route_timer

    class Host:  # what the timer service uses of a Broker
        def __init__(self, store: FileMessageStore) -> None:
            self.store, self.stats = store, BrokerStats()

    store = FileMessageStore(StoreSettings(store_path_root_dir=root))
    await store.start()
    policy = TimerPolicy(True, 3 * 24 * 3600_000, PRECISION_MS)
    now = int(time.time() * 1000)
    t0 = time.perf_counter()
    batch = []
    for i in range(count):  # 1-3 hours ahead: all pending while measured
        props = {"TIMER_DELAY_MS": str(3_600_000 + (i * 7919) % 7_200_000),
                 "UNIQ_KEY": f"{i:032X}"}  # fmt: skip
        routed = route_timer(MessageToStore("Real", i % 4, BODY[:64], encode_properties(props)),
                             now, policy)  # fmt: skip
        assert isinstance(routed, MessageToStore)
        batch.append(routed)
        if len(batch) == 64:
            await store.put_messages(batch)
            batch = []
    if batch:
        await store.put_messages(batch)
    while store.reput.reput_offset < store.commit_log.max_offset:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    put_s = time.perf_counter() - t0
    svc = TimerService(Host(store), root / "config" / "timerCheckpoint.json",  # type: ignore[arg-type]
                       PRECISION_MS, data_dir=root)  # fmt: skip
    svc.load()
    before = _rss()
    t0 = time.perf_counter()
    async with svc:
        while svc.wheel.next_offset < count:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        index_s = time.perf_counter() - t0
        after = _rss()
        pending = svc.pending
    await store.stop()
    print(json.dumps({"count": count, "put_s": put_s, "index_s": index_s,
                      "index_msgs_s": count / index_s, "pending": pending,
                      "anon_before_mib": before["RssAnon"], "anon_after_mib": after["RssAnon"],
                      "file_after_mib": after["RssFile"]}), flush=True)  # fmt: skip


# -- running and reporting --------------------------------------------------------------------


async def run_all(plan: Plan) -> Results:
    res = Results(machine={"python": platform.python_version(), "cpus": os.cpu_count()})
    WORK_ROOT.mkdir(exist_ok=True)
    work = WORK_ROOT / f"semantics-bench-{os.getpid()}"
    work.mkdir()
    f = res.figures
    try:
        network = [p for p in plan.phases if p != "timer_scale"]
        if network:
            broker = start_broker(work)
            try:
                async with RemotingClient() as client:
                    for t in ("SemPlain", "SemTimer", "SemDelay", "SemTx", "SemNormal", "SemStorm"):
                        await create_topic(client, broker.addr, t)
                    await pipelined(broker.addr, Frames("SemPlain"), 0.5)  # warm-up
                    f["plain"] = await bench_plain(broker.addr, plan)
                    if "timer" in network:
                        f["timer"] = await bench_timer(broker.addr, plan, client)
                    if "delay" in network:
                        f["delay"] = await bench_delay(broker.addr, plan, client)
                    if "tx" in network:
                        f["tx"] = await bench_tx(broker.addr, plan, client)
                    if "storm" in network:
                        f["storm"] = await bench_storm(
                            broker.addr, plan, client, f["plain"]["msgs_s"]
                        )
            finally:
                broker.stop()
        if "timer_scale" in plan.phases:
            f["timer_scale"] = timer_scale(plan.timer_pending, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    evaluate(res)
    return res


def evaluate(res: Results) -> None:
    f, t = res.figures, res.targets
    plain = f.get("plain", {}).get("msgs_s", 0.0)
    if "timer" in f:
        x = f["timer"]
        ok = x["slot_p99_ms"] <= TARGET_TIMER_SLOT_P99_MS and not x["early"] and not x["lost"]
        t.append((f"timer: arrival within {TARGET_TIMER_SLOT_P99_MS:.0f} ms of its slot's end "
                  "(p99), none early, none lost", ok,
                  f"p99 {x['slot_p99_ms']:.0f} ms, {x['early']:.0f} early, {x['lost']:.0f} lost"))
    if "delay" in f and plain:
        x = f["delay"]
        r = x["send_msgs_s"] / plain
        t.append((f"delayed sends >= {TARGET_DELAY_RATIO:.0%} of plain sends, none early", r >=
                  TARGET_DELAY_RATIO and not x["early"], f"{r:.0%}, {x['early']:.0f} early"))
    if "tx" in f and plain:
        r = f["tx"]["committed_msgs_s"] / plain
        t.append((f"committed transactional sends >= {TARGET_TX_RATIO:.0%} of plain sends",
                  r >= TARGET_TX_RATIO, f"{r:.0%}"))
    if "storm" in f:
        x = f["storm"]
        t.append((f"NormalG keeps >= {TARGET_STORM_RATIO:.0%} of its rate during the retry storm",
                  x["normal_ratio"] >= TARGET_STORM_RATIO and not x["normal_lost"],
                  f"{x['normal_ratio']:.0%}, p99 {x['normal_alone_p99_ms']:.0f} -> "
                  f"{x['normal_storm_p99_ms']:.0f} ms"))
    if "timer_scale" in f:
        x = f["timer_scale"]
        grew = x["anon_after_mib"] - x["anon_before_mib"]
        t.append((f"{x['count']:,.0f} pending timer messages: RssAnon grows < 32 MiB",
                  grew < 32, f"+{grew:.1f} MiB"))


def report(res: Results, out: Callable[[str], None]) -> None:
    f = res.figures
    out(f"python {res.machine['python']}, {res.machine['cpus']} cpus; 1 KiB bodies, {QUEUES} "
        f"queues, {WINDOW} in flight; levels 100 ms..1.8 s, timerPrecisionMs={PRECISION_MS}")
    plain = f.get("plain", {}).get("msgs_s", 0.0)
    if "plain" in f:
        x = f["plain"]
        out(f"  plain sends       {x['msgs_s']:>9,.0f} msgs/s  p50 {x['p50_us']:,.0f} us  "
            f"p99 {x['p99_us']:,.0f} us  (the baseline)")
    if "timer" in f:
        x = f["timer"]
        out(f"  timer accuracy    {x['msgs']:,.0f} msgs, lateness vs time asked p50 "
            f"{x['late_p50_ms']:.0f} ms p99 {x['late_p99_ms']:.0f} ms max {x['late_max_ms']:.0f}"
            f" ms; vs its slot's end p50 {x['slot_p50_ms']:.0f} ms p99 {x['slot_p99_ms']:.0f} "
            f"ms; {x['early']:.0f} early, {x['lost']:.0f} lost")
    if "delay" in f:
        x = f["delay"]
        out(f"  delayed sends     {x['send_msgs_s']:>9,.0f} msgs/s = "
            f"{x['send_msgs_s'] / plain:.0%} of plain; {x['msgs']:,.0f} over 18 levels, "
            f"delivered at {x['delivery_msgs_s']:,.0f} msgs/s; lateness p50 "
            f"{x['late_p50_ms']:.0f} ms p99 {x['late_p99_ms']:.0f} ms; {x['early']:.0f} early")
    if "tx" in f:
        x = f["tx"]
        out(f"  transactional     {x['committed_msgs_s']:>9,.0f} committed msgs/s = "
            f"{x['committed_msgs_s'] / plain:.0%} of plain (half messages answered at "
            f"{x['half_msgs_s']:,.0f} msgs/s)")
    if "storm" in f:
        x = f["storm"]
        out(f"  retry storm       {x['storm_msgs']:,.0f} msgs failed once by StormG: "
            f"{x['storm_msgs_s']:,.0f} retried msgs/s, {x['storm_s']:.1f} s (preload "
            f"{x['preload_s']:.1f} s)")
        out(f"                    NormalG paced at {x['normal_rate']:,.0f} msgs/s "
            f"({x['normal_share']:.0%} of plain sends) delivered "
            f"{x['normal_alone_msgs_s']:,.0f} -> "
            f"{x['normal_storm_msgs_s']:,.0f} msgs/s during the storm = {x['normal_ratio']:.0%};"
            f" latency p50 {x['normal_alone_p50_ms']:.1f} -> {x['normal_storm_p50_ms']:.1f} ms,"
            f" p99 {x['normal_alone_p99_ms']:.1f} -> {x['normal_storm_p99_ms']:.1f} ms")
    if "timer_scale" in f:
        x = f["timer_scale"]
        out(f"  timer scale       {x['count']:,.0f} pending timer messages indexed at "
            f"{x['index_msgs_s']:,.0f} msgs/s; RssAnon {x['anon_before_mib']:.1f} -> "
            f"{x['anon_after_mib']:.1f} MiB (RssFile {x['file_after_mib']:.0f} MiB: mapped "
            f"CommitLog, ConsumeQueue and timer files, page cache)")
    out("targets (informational):")
    for name, ok, got in res.targets:
        out(f"  {'PASS' if ok else 'MISS'}  {name}: {got}")


def write_json(path: Path, res: Results) -> None:
    data: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        old = json.loads(path.read_text())
        if isinstance(old, dict):
            data = old
    data["semantics"] = asdict(res)
    path.write_text(json.dumps(data, indent=2, default=str))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer messages (about a minute)")
    ap.add_argument("--json", type=Path, help='also write the figures to this file, as "semantics"')
    ap.add_argument("--phases", default=",".join(PHASES), help="phases to run")
    ap.add_argument("--storm", type=int, help="messages in the retry storm")
    ap.add_argument("--timer-pending", type=int, help="pending timer messages for timer_scale")
    ap.add_argument("--timer-scale-child", nargs=2, help=argparse.SUPPRESS)
    args, _ = ap.parse_known_args(argv)  # run.py passes the other benchmarks' options too
    if args.timer_scale_child:
        asyncio.run(timer_scale_child(int(args.timer_scale_child[0]),
                                      Path(args.timer_scale_child[1])))  # fmt: skip
        return 0
    plan = QUICK if args.quick else Plan()
    # run.py hands every benchmark the same options: other benchmarks' phase names run all.
    plan.phases = tuple(p.strip() for p in args.phases.split(",") if p.strip() in PHASES) or PHASES
    if args.storm:
        plan.storm_msgs = args.storm
    if args.timer_pending:
        plan.timer_pending = args.timer_pending
    res = asyncio.run(run_all(plan))
    report(res, print)
    if args.json:
        write_json(args.json, res)
    return 0


if __name__ == "__main__":
    # SIGTERM (a timeout, a CI job cancelled) unwinds like Ctrl-C: the servers started are stopped.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    sys.exit(main())
