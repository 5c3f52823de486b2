"""Broker benchmark: 1 KiB sends and pulls through the real protocol on loopback.

    python benchmarks/broker_bench.py [--quick] [--json FILE] [--modes ASYNC_FLUSH,SYNC_FLUSH]
                                      [--phases single,pipelined,batch,e2e,timer] [--profile DIR]

The broker runs as users run it (`rmqkit serve`, a subprocess); this process is the load
generator. For each flushDiskType it measures

- single: one SEND_MESSAGE_V2 in flight (ack latency p50/p99);
- pipelined: 64 sends in flight on one connection;
- batch: SEND_BATCH_MESSAGE of 32 messages, 8 batches in flight;
- e2e: the pipelined producer at full speed plus a consumer long-polling every queue; latency is
  the receive time minus a monotonic timestamp the producer put in the body;
- timer: pipelined sends with TIMER_DELAY_MS spread over 1-3 s against the same sends without it
  (send rate ratio); the rate at which a consumer receives a timer slot that has fallen due,
  against the plain send rate (and beside the rate at which it drains a plain backlog); lateness:
  arrival minus the time asked for (p50/p99 ms; never negative, half a `timerPrecisionMs` slot
  on average by design, plus the time to drain the slot).

Every figure is printed as a ratio to a baseline measured in the same run with the same client:
a bare RemotingServer in a subprocess that answers SUCCESS at once (`--echo-server`). These
machines drift by about 20% an hour, so only the ratios compare across runs. Beside each figure:
the server's CPU time per message (steadier than throughput on a shared machine) and the cores
used by the server, the client and every other process meanwhile. Targets print PASS or MISS; the
exit status stays 0.

The client (`broker_load.py`) drives the protocol with callbacks rather than a coroutine per
request, so one client core outruns one broker core. `--profile DIR` records the server with
py-spy during each phase (collapsed stacks, one file a phase).
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
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from broker_load import (
    BODY,
    BODY_AT_V4,
    E2E_TOPIC,
    FRAME_PREFIX,
    HOST_V6_BITS,
    QUEUES,
    RECORD_HEAD,
    SUCCESS,
    TOPIC,
    TS,
    Consumer,
    Framed,
    Pipeline,
    SendFrames,
)
from rmqkit.common.properties import encode_properties
from rmqkit.protocol.codes import RequestCode, ResponseCode
from rmqkit.protocol.command import RemotingCommand
from rmqkit.remoting.client import RemotingClient

WORK_ROOT = Path(__file__).resolve().parent / ".work"
"""Scratch space on the project's own file system (git-ignored); /tmp may be a tmpfs."""
RMQKIT = Path(sys.executable).parent / "rmqkit"
"""The `rmqkit` command of the environment running the benchmark (`.venv/bin/rmqkit`)."""
WINDOW = 64
"""Sends in flight in the pipelined and e2e runs."""
BATCH = 32
"""Messages per SEND_BATCH_MESSAGE."""
BATCH_WINDOW = 8
"""Batches in flight."""
FLUSH_MODES = ("ASYNC_FLUSH", "SYNC_FLUSH")
PHASES = ("single", "pipelined", "batch", "e2e", "timer")

TARGET_SINGLE_P50_US = 300.0
TARGET_PIPELINED_SYNC = 40_000.0
TARGET_BATCH = 150_000.0
TARGET_E2E = 30_000.0
TARGET_E2E_P99_MS = 20.0
TIMER_DELAYS_MS = (1000, 3000)
"""Timed sends ask for a delay spread evenly over this range."""
TIMER_PRECISION_MS = 1000
"""The broker's `timerPrecisionMs` (its default): lateness is up to one slot by design."""
TIMER_BURST_GAP_NS = 100_000_000
"""Arrivals further apart than this belong to different slots' bursts."""


@dataclass(slots=True)
class Plan:
    """Seconds per phase; `--quick` shrinks them."""

    single_s: float = 3.0
    pipelined_s: float = 5.0
    batch_s: float = 5.0
    e2e_s: float = 8.0
    timer_s: float = 2.0
    """Seconds of timed sends (and of plain sends to compare); the phase takes about 3x."""
    warmup_s: float = 1.0
    phases: tuple[str, ...] = PHASES


QUICK = Plan(single_s=1.5, pipelined_s=2.0, batch_s=2.0, e2e_s=3.0, timer_s=1.0, warmup_s=0.5)


@dataclass(slots=True)
class Figure:
    """One measured phase."""

    msgs: int = 0
    seconds: float = 0.0
    msgs_s: float = 0.0
    p50_us: float = 0.0
    p99_us: float = 0.0
    errors: int = 0
    first_error: str = ""
    client_cpu: float = 0.0
    """Client process CPU over the phase, 1.0 = one core."""
    server_cpu: float = 0.0
    """Server process CPU, threads included (its fdatasync workers), and its children's."""
    index_cpu: float = 0.0
    """Of `server_cpu`: the broker's children (its index builder process)."""
    others_cpu: float = 0.0
    """CPU used by other processes on the machine meanwhile (they skew the figures)."""
    extra: dict[str, float] = field(default_factory=dict)


@dataclass(slots=True)
class Results:
    machine: dict[str, Any] = field(default_factory=dict)
    baseline: dict[str, Figure] = field(default_factory=dict)
    modes: dict[str, dict[str, Figure]] = field(default_factory=dict)
    targets: list[tuple[str, bool, str]] = field(default_factory=list)


# -- processes --------------------------------------------------------------------------------


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    addr: str
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _wait_line(proc: subprocess.Popen[bytes], pattern: re.Pattern[str], what: str) -> re.Match[str]:
    assert proc.stdout is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stdout.readline().decode()
        if not line:
            break
        m = pattern.search(line)
        if m:
            return m
    proc.kill()
    raise RuntimeError(f"{what} did not start (exit {proc.poll()})")


def start_broker(work: Path, flush: str) -> Server:
    data = work / f"broker-{flush.lower()}"
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    env = dict(os.environ, RMQKIT_STORE__FLUSH_DISK_TYPE=flush)
    log = data / "broker.log"
    proc = subprocess.Popen(
        [str(RMQKIT), "serve", "--port", "0", "--namesrv-port", "0", "--data-dir", str(data)],
        stdout=subprocess.PIPE, stderr=log.open("wb"), env=env, cwd=str(data),
    )  # fmt: skip
    m = _wait_line(proc, re.compile(r"listening on (\S+:\d+)"), "the broker")
    return Server(proc, m.group(1).rstrip(","), log)


def start_echo(work: Path) -> Server:
    log = work / "echo.log"
    proc = subprocess.Popen(
        [sys.executable, __file__, "--echo-server"], stdout=subprocess.PIPE,
        stderr=log.open("wb"), cwd=str(work),
    )  # fmt: skip
    m = _wait_line(proc, re.compile(r"echo server listening on (\S+:\d+)"), "the echo server")
    return Server(proc, m.group(1), log)


async def echo_server() -> None:
    """A bare RemotingServer answering SUCCESS at once: the round trip every request pays."""
    from rmqkit.remoting.server import RemotingServer

    server = RemotingServer("127.0.0.1", 0)

    def echo(conn: object, cmd: RemotingCommand) -> RemotingCommand:
        return cmd.response(ResponseCode.SUCCESS)

    for code in (RequestCode.SEND_MESSAGE_V2, RequestCode.SEND_BATCH_MESSAGE):
        server.register(code, echo)
    await server.start()
    print(f"echo server listening on 127.0.0.1:{server.port}", flush=True)
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    loop.add_signal_handler(signal.SIGTERM, stop.set_result, None)
    await stop
    await server.stop()


def machine_busy_seconds() -> float:
    """CPU seconds all processes have used, from /proc/stat (user..steal, not idle/iowait)."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU of this process, the server and everything else over a phase, in cores."""

    def __init__(self, server_pid: int) -> None:
        self.pid = server_pid
        self.t0 = time.perf_counter()
        self.c0, self.s0 = time.process_time(), cpu_seconds(server_pid)
        self.k0 = children_cpu_seconds(server_pid)
        self.m0 = machine_busy_seconds()

    def fill(self, fig: Figure) -> None:
        wall = time.perf_counter() - self.t0
        client = time.process_time() - self.c0
        kids = children_cpu_seconds(self.pid) - self.k0
        server = cpu_seconds(self.pid) - self.s0 + kids
        total = machine_busy_seconds() - self.m0
        fig.client_cpu, fig.server_cpu, fig.index_cpu = client / wall, server / wall, kids / wall
        fig.others_cpu = max(0.0, total - client - server) / wall


def children_cpu_seconds(pid: int) -> float:
    """utime + stime of the live children of a process (the broker's index builder)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid:
            total += cpu_seconds(int(entry.name))
    return total


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def profiled(profile_dir: Path | None, pid: int, name: str) -> Iterator[None]:
    """py-spy the server while the block runs (collapsed stacks, for `--profile`)."""
    if profile_dir is None:
        yield
        return
    py_spy = Path(sys.executable).parent / "py-spy"
    out = profile_dir / f"{name}.txt"
    proc = subprocess.Popen(
        [str(py_spy), "record", "--pid", str(pid), "--format", "raw", "--rate", "250",
         "--nonblocking", "--output", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(0.5)
    try:
        yield
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)


# -- phases -----------------------------------------------------------------------------------


def _pct(sorted_ns: list[int], q: float) -> float:
    if not sorted_ns:
        return 0.0
    return sorted_ns[min(len(sorted_ns) - 1, int(q * len(sorted_ns)))] / 1000


async def _connect(addr: str, factory: Callable[[], Framed]) -> Framed:
    host, port = addr.rsplit(":", 1)
    loop = asyncio.get_running_loop()
    _, proto = await loop.create_connection(factory, host, int(port))
    return proto


async def pipelined(
    addr: str, make: Callable[[int], bytes], window: int, seconds: float, server_pid: int,
    per_request: int = 1,
) -> Figure:  # fmt: skip
    """Keep `window` requests in flight for `seconds`; throughput and ack latency."""
    proto = await _connect(addr, lambda: Pipeline(make, window, per_request))
    assert isinstance(proto, Pipeline)
    meter = CpuMeter(server_pid)
    t0 = time.perf_counter()
    await proto.run(seconds)
    wall = time.perf_counter() - t0
    fig = Figure(
        msgs=proto.acked,
        seconds=wall,
        msgs_s=proto.acked / wall,
        errors=proto.errors,
        first_error=proto.first_error,
    )
    meter.fill(fig)
    lat = sorted(proto.lat_ns)
    fig.p50_us, fig.p99_us = _pct(lat, 0.5), _pct(lat, 0.99)
    assert proto.transport is not None
    proto.transport.close()
    return fig


async def end_to_end(addr: str, seconds: float, server_pid: int) -> Figure:
    """Pipelined producer at full speed and a long-polling consumer on the same broker."""
    consumer = await _connect(addr, Consumer)
    assert isinstance(consumer, Consumer)
    frames = SendFrames(E2E_TOPIC, stamp=True)
    producer = await _connect(addr, lambda: Pipeline(frames.frame, WINDOW))
    assert isinstance(producer, Pipeline)
    consumer.start()
    await asyncio.sleep(0.2)  # the pulls are held before the first message
    meter = CpuMeter(server_pid)
    t0 = time.perf_counter()
    start_ns = time.perf_counter_ns()
    await producer.run(seconds)
    produce_s = time.perf_counter() - t0
    drain_until = time.monotonic() + 30
    while consumer.received < producer.acked and time.monotonic() < drain_until:  # noqa: ASYNC110
        await asyncio.sleep(0.005)
    wall = (consumer.last_ns - start_ns) / 1e9 if consumer.last_ns else time.perf_counter() - t0
    lat = sorted(consumer.lat_ns)
    fig = Figure(
        msgs=consumer.received,
        seconds=wall,
        msgs_s=consumer.received / wall if wall > 0 else 0.0,
        p50_us=_pct(lat, 0.5),
        p99_us=_pct(lat, 0.99),
        errors=producer.errors + consumer.errors + max(0, producer.acked - consumer.received),
        first_error=producer.first_error or consumer.first_error,
        extra={
            "produced_msgs_s": producer.acked / produce_s,
            "send_p50_us": _pct(sorted(producer.lat_ns), 0.5),
            "max_ms": lat[-1] / 1e6 if lat else 0.0,
        },
    )
    meter.fill(fig)
    consumer.stopping = True
    for p in (producer, consumer):
        assert p.transport is not None
        p.transport.close()
    return fig


# -- timer ------------------------------------------------------------------------------------


class DueFrames:
    """SEND_MESSAGE_V2 frames to E2E_TOPIC whose body starts with when the message is due
    (monotonic ns): its send time, or that plus its TIMER_DELAY_MS. One header built per frame,
    the same way for plain and timed sends, so their rates compare."""

    def __init__(self, timed: bool) -> None:
        self.timed = timed
        self.seq = 0
        self.born = str(int(time.time() * 1000))
        self.uniq = f"7F000001{os.getpid() & 0xFFFF:04X}18B4AAC3"

    def frame(self, opaque: int) -> bytes:
        self.seq += 1
        props = {"TAGS": "TagA", "KEYS": "order", "UNIQ_KEY": f"{self.uniq}{self.seq:012X}",
                 "WAIT": "true"}  # fmt: skip
        due = time.monotonic_ns()
        if self.timed:
            lo, hi = TIMER_DELAYS_MS
            delay = lo + (self.seq * 7919) % (hi - lo)
            props["TIMER_DELAY_MS"] = str(delay)
            due += delay * 1_000_000
        ext = {"a": "BenchProducer", "b": E2E_TOPIC, "c": "TBW102", "d": "4",
               "e": str(opaque % QUEUES), "f": "0", "g": self.born, "h": "0",
               "i": encode_properties(props), "j": "0", "k": "false", "m": "false"}  # fmt: skip
        header = orjson.dumps({"code": int(RequestCode.SEND_MESSAGE_V2), "language": "JAVA",
                               "version": 479, "opaque": opaque, "flag": 0, "extFields": ext,
                               "serializeTypeCurrentRPC": "JSON"})  # fmt: skip
        body = TS.pack(due) + BODY[8:]
        return FRAME_PREFIX.pack(4 + len(header) + len(body), len(header)) + header + body


class DueConsumer(Consumer):
    """The e2e consumer, from given offsets, also keeping (due, arrival) of every message."""

    def __init__(self, offsets: list[int]) -> None:
        super().__init__()
        self.offsets = list(offsets)
        self.arrivals: list[tuple[int, int]] = []

    def _on_response(self, h: dict[str, Any], body: memoryview, now: int) -> None:
        if h["code"] == SUCCESS and h["opaque"] in self.queue_of:
            mono, pos = time.monotonic_ns(), 0
            while pos < len(body):
                size, sys_flag = RECORD_HEAD.unpack_from(body, pos)
                if not sys_flag & HOST_V6_BITS:
                    self.arrivals.append((TS.unpack_from(body, pos + BODY_AT_V4)[0], mono))
                pos += size
        super()._on_response(h, body, now)


async def _send_and_receive(
    addr: str, timed: bool, seconds: float, pid: int
) -> tuple[Figure, DueConsumer]:
    """Pipelined sends for `seconds`, then received in full. Timed ones by a consumer started
    before them (arrivals on time); plain ones by a consumer started after them, so their rate is
    that of draining a backlog, the plain counterpart of the timer draining a slot."""
    async with RemotingClient() as client:
        offsets = []
        for q in range(QUEUES):
            cmd = RemotingCommand(RequestCode.GET_MAX_OFFSET,
                                  ext_fields={"topic": E2E_TOPIC, "queueId": str(q)})  # fmt: skip
            offsets.append(int((await client.invoke(addr, cmd, 10.0)).ext_fields["offset"]))
    consumer = await _connect(addr, lambda: DueConsumer(offsets))
    assert isinstance(consumer, DueConsumer)
    if timed:
        consumer.start()
        await asyncio.sleep(0.2)  # the pulls are held before the first message
    fig = await pipelined(addr, DueFrames(timed).frame, WINDOW, seconds, pid)
    if not timed:
        consumer.start()
    drain_until = time.monotonic() + 30 + TIMER_DELAYS_MS[1] / 1000
    while len(consumer.arrivals) < fig.msgs and time.monotonic() < drain_until:  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    consumer.stopping = True
    assert consumer.transport is not None
    consumer.transport.close()
    fig.errors += max(0, fig.msgs - len(consumer.arrivals)) + consumer.errors
    fig.first_error = fig.first_error or consumer.first_error
    return fig, consumer


def _delivery_rate(arrivals: list[int]) -> float:
    """Messages per second while arriving: bursts split at gaps over TIMER_BURST_GAP_NS."""
    arrivals = sorted(arrivals)
    msgs, ns, start = 0, 0, 0
    for i in range(1, len(arrivals) + 1):
        if i == len(arrivals) or arrivals[i] - arrivals[i - 1] > TIMER_BURST_GAP_NS:
            if i - start > 1:
                msgs, ns = msgs + i - start, ns + arrivals[i - 1] - arrivals[start]
            start = i
    return msgs / (ns / 1e9) if ns else 0.0


async def bench_timer(addr: str, seconds: float, pid: int) -> Figure:
    """Timed against plain sends; the timer's delivery rate and lateness."""
    plain, plain_c = await _send_and_receive(addr, False, seconds, pid)
    fig, timed_c = await _send_and_receive(addr, True, seconds, pid)
    late_ms = sorted((arrival - due) / 1e6 for due, arrival in timed_c.arrivals)
    plain_rate = _delivery_rate([a for _, a in plain_c.arrivals])
    timer_rate = _delivery_rate([a for _, a in timed_c.arrivals])
    fig.extra = {
        "plain_send_msgs_s": plain.msgs_s,
        "send_ratio": fig.msgs_s / plain.msgs_s if plain.msgs_s else 0.0,
        "plain_delivery_msgs_s": plain_rate,
        "timer_delivery_msgs_s": timer_rate,
        "delivery_ratio": timer_rate / plain.msgs_s if plain.msgs_s else 0.0,
        "late_p50_ms": _pct_ms(late_ms, 0.5),
        "late_p99_ms": _pct_ms(late_ms, 0.99),
        "early": float(sum(1 for v in late_ms if v < 0)),
    }
    fig.errors += plain.errors
    return fig


def _pct_ms(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))] if values else 0.0


def _timer_lines(f: Figure, out: Callable[[str], None]) -> None:
    x = f.extra
    out(f"{'':12}timed sends {f.msgs_s:,.0f} msgs/s = {x['send_ratio']:.1%} of plain sends "
        f"({x['plain_send_msgs_s']:,.0f} msgs/s, same client)")  # fmt: skip
    out(f"{'':12}timer delivery {x['timer_delivery_msgs_s']:,.0f} msgs/s while a due slot drains "
        f"= {x['delivery_ratio']:.1%} of plain sends (over 100%: it keeps up with producers); "
        f"a plain backlog drains at {x['plain_delivery_msgs_s']:,.0f} msgs/s")  # fmt: skip
    out(f"{'':12}lateness (arrival - time asked) p50 {x['late_p50_ms']:.0f} ms, p99 "
        f"{x['late_p99_ms']:.0f} ms with {TIMER_PRECISION_MS} ms slots; early: "
        f"{x['early']:.0f}")  # fmt: skip


async def create_topics(addr: str) -> None:
    async with RemotingClient() as client:
        for topic in (TOPIC, E2E_TOPIC):
            cmd = RemotingCommand(
                RequestCode.UPDATE_AND_CREATE_TOPIC,
                ext_fields={
                    "topic": topic, "defaultTopic": "TBW102", "readQueueNums": str(QUEUES),
                    "writeQueueNums": str(QUEUES), "perm": "6", "topicFilterType": "SINGLE_TAG",
                },
            )  # fmt: skip
            r = await client.invoke(addr, cmd, 10.0)
            if r.code != ResponseCode.SUCCESS:
                raise RuntimeError(f"cannot create {topic}: {r.remark}")


async def bench_baseline(work: Path, plan: Plan, res: Results, profile: Path | None) -> None:
    echo = start_echo(work)
    try:
        frames = SendFrames(TOPIC)
        await pipelined(echo.addr, frames.frame, WINDOW, plan.warmup_s, echo.pid)
        with profiled(profile, echo.pid, "echo-single"):
            res.baseline["single"] = await pipelined(
                echo.addr, frames.frame, 1, plan.single_s, echo.pid
            )
        with profiled(profile, echo.pid, "echo-pipelined"):
            res.baseline["pipelined"] = await pipelined(
                echo.addr, frames.frame, WINDOW, plan.pipelined_s, echo.pid
            )
    finally:
        echo.stop()


async def bench_mode(
    work: Path, flush: str, plan: Plan, res: Results, profile: Path | None
) -> None:
    broker = start_broker(work, flush)
    figs: dict[str, Figure] = {}
    res.modes[flush] = figs
    try:
        await create_topics(broker.addr)
        frames = SendFrames(TOPIC)
        batches = SendFrames(TOPIC, batch=BATCH)
        pid = broker.pid
        addr = broker.addr
        await pipelined(addr, frames.frame, WINDOW, plan.warmup_s, pid)
        phases: dict[str, Callable[[], Awaitable[Figure]]] = {
            "single": lambda: pipelined(addr, frames.frame, 1, plan.single_s, pid),
            "pipelined": lambda: pipelined(addr, frames.frame, WINDOW, plan.pipelined_s, pid),
            "batch": lambda: pipelined(
                addr, batches.frame, BATCH_WINDOW, plan.batch_s, pid, per_request=BATCH
            ),
            "e2e": lambda: end_to_end(addr, plan.e2e_s, pid),
            "timer": lambda: bench_timer(addr, plan.timer_s, pid),
        }
        tag = flush.lower().replace("_flush", "")
        for name, measure in phases.items():
            if name in plan.phases:
                with profiled(profile, pid, f"{tag}-{name}"):
                    figs[name] = await measure()
        log_text = broker.log.read_text(errors="replace")
        if flush not in log_text:
            raise RuntimeError(f"the broker did not report {flush}; its log:\n{log_text}")
    finally:
        broker.stop()
        shutil.rmtree(work / f"broker-{flush.lower()}", ignore_errors=True)


async def run_all(plan: Plan, modes: list[str], profile: Path | None) -> Results:
    res = Results()
    res.machine = {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "client_loop": type(asyncio.get_running_loop()).__module__.split(".")[0],
    }
    WORK_ROOT.mkdir(exist_ok=True)
    work = WORK_ROOT / f"broker-bench-{os.getpid()}"
    work.mkdir()
    try:
        await bench_baseline(work, plan, res, profile)
        for flush in modes:
            await bench_mode(work, flush, plan, res, profile)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    evaluate(res)
    return res


# -- report -----------------------------------------------------------------------------------


def evaluate(res: Results) -> None:
    t = res.targets
    for flush, figs in res.modes.items():
        m = flush
        if "single" in figs:
            p50 = figs["single"].p50_us
            t.append((f"{m} single in-flight send p50 <= {TARGET_SINGLE_P50_US:.0f} us",
                      p50 <= TARGET_SINGLE_P50_US, f"{p50:.0f} us"))  # fmt: skip
        if "pipelined" in figs:
            r = figs["pipelined"].msgs_s
            t.append((f"{m} pipelined sends >= {TARGET_PIPELINED_SYNC:,.0f} msgs/s",
                      r >= TARGET_PIPELINED_SYNC, f"{r:,.0f} msgs/s"))  # fmt: skip
        if "batch" in figs:
            r = figs["batch"].msgs_s
            t.append((f"{m} batch sends >= {TARGET_BATCH:,.0f} msgs/s", r >= TARGET_BATCH,
                      f"{r:,.0f} msgs/s"))  # fmt: skip
        if "e2e" in figs:
            e = figs["e2e"]
            ok = e.msgs_s >= TARGET_E2E and e.p99_us / 1000 <= TARGET_E2E_P99_MS and not e.errors
            t.append((f"{m} end-to-end >= {TARGET_E2E:,.0f} msgs/s with p99 <= "
                      f"{TARGET_E2E_P99_MS:.0f} ms", ok,
                      f"{e.msgs_s:,.0f} msgs/s, p99 {e.p99_us / 1000:.1f} ms"))  # fmt: skip
        if "timer" in figs:
            x = figs["timer"].extra
            limit = TIMER_PRECISION_MS * 3 // 2
            ok = not x["early"] and x["late_p99_ms"] <= limit and not figs["timer"].errors
            t.append((f"{m} timer: none early, none lost, lateness p99 <= {limit} ms", ok,
                      f"p99 {x['late_p99_ms']:.0f} ms, {x['early']:.0f} early, "
                      f"{figs['timer'].errors} errors"))  # fmt: skip


def _us_per_msg(f: Figure) -> float:
    return f.server_cpu * f.seconds / f.msgs * 1e6 if f.msgs else 0.0


def _line(name: str, f: Figure, base: Figure, unit: str = "msgs/s") -> str:
    ratio = f"{f.msgs_s / base.msgs_s:6.1%}" if base is not f and base.msgs_s else "  base"
    index = f" (index builder {f.index_cpu:.2f})" if f.index_cpu else ""
    return (
        f"  {name:<10}{f.msgs_s:>9,.0f} {unit} {ratio}  p50 {f.p50_us:>7,.0f} us  p99 "
        f"{f.p99_us:>8,.0f} us  server {_us_per_msg(f):5.1f} us cpu/msg  cores: server "
        f"{f.server_cpu:.2f}{index} client {f.client_cpu:.2f} others {f.others_cpu:.2f}"
    )


def report(res: Results, out: Callable[[str], None]) -> None:
    m = res.machine
    out(f"python {m['python']}, {m['cpus']} cpus, client loop {m['client_loop']}; 1 KiB bodies, "
        f"{QUEUES} queues; pipelined = {WINDOW} in flight, batch = {BATCH} msgs x "
        f"{BATCH_WINDOW} in flight")  # fmt: skip
    b1, bp = res.baseline["single"], res.baseline["pipelined"]
    out("baseline: bare RemotingServer answering SUCCESS at once (same client, same frames)")
    out(_line("single", b1, b1, "req/s "))
    out(_line(f"{WINDOW}-flight", bp, bp, "req/s "))
    out("broker (ratio = msgs/s against the baseline with as many requests in flight; "
        "single and e2e latency are also against the bare round trip):")  # fmt: skip
    for flush, figs in res.modes.items():
        out(f" {flush}")
        for name, f in figs.items():
            out(_line(name, f, b1 if name == "single" else bp))
            if name == "single" and b1.p50_us:
                out(f"{'':12}ack p50 = {f.p50_us / b1.p50_us:.2f} x the bare round trip")
            if name == "timer":
                _timer_lines(f, out)
            if name == "e2e":
                out(f"{'':12}producer {f.extra['produced_msgs_s']:,.0f} msgs/s, send ack p50 "
                    f"{f.extra['send_p50_us']:,.0f} us, worst latency {f.extra['max_ms']:.1f} ms"
                    )  # fmt: skip
            if f.errors:
                out(f"{'':12}{f.errors} errors, first: {f.first_error}")
    busy = [f.others_cpu for figs in res.modes.values() for f in figs.values()]
    if busy and max(busy) > 0.25:
        out(f"note: other processes used up to {max(busy):.2f} cores during the run; with "
            f"{m['cpus']} cpus the figures are low")  # fmt: skip
    out("targets (informational):")
    for name, ok, got in res.targets:
        out(f"  {'PASS' if ok else 'MISS'}  {name}: {got}")


def write_json(path: Path, figures: dict[str, Any]) -> None:
    """Put the figures under "broker" in `path`, keeping what is there (run.py's store figures)."""
    data: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        old = json.loads(path.read_text())
        if isinstance(old, dict):
            data = old
    data["broker"] = figures
    path.write_text(json.dumps(data, indent=2, default=str))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="shorter phases (about 40 s in all)")
    ap.add_argument("--json", type=Path, help='also write the figures to this file, as "broker"')
    ap.add_argument("--modes", default=",".join(FLUSH_MODES), help="flushDiskTypes to run")
    ap.add_argument("--phases", default=",".join(PHASES), help="broker phases to run")
    ap.add_argument("--profile", type=Path, help="py-spy the servers into this folder")
    ap.add_argument("--echo-server", action="store_true", help=argparse.SUPPRESS)
    args, _ = ap.parse_known_args(argv)  # run.py passes the store benchmark's options too
    if args.echo_server:
        asyncio.run(echo_server())  # the loop `rmqkit serve` runs on
        return 0
    modes = [m.strip().upper() for m in args.modes.split(",") if m.strip()]
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    plan = QUICK if args.quick else Plan()
    plan.phases = tuple(p.strip() for p in args.phases.split(",") if p.strip() in PHASES)
    res = asyncio.run(run_all(plan, modes, args.profile))
    report(res, print)
    if args.json:
        write_json(args.json, asdict(res))
    return 0


if __name__ == "__main__":
    # SIGTERM (a timeout, a CI job cancelled) unwinds like Ctrl-C: the servers started are stopped.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    sys.exit(main())
