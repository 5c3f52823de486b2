"""Client benchmark: what one rmqkit Producer and one PushConsumer cost, and what they reach.

    python benchmarks/client_bench.py [--quick] [--json FILE] [--profile DIR]
                                      [--client-side producer|consumer] [--fake-only]

Two servers, each in its own process, take the client's load:

- a fake broker (`--fake-broker`): a bare RemotingServer that is its own NameServer, answers
  SEND_MESSAGE_V2 at once with a canned SendResult and PULL_MESSAGE at once with a pre-encoded
  batch of 32 records (`rmqkit.protocol.record`), so it is never the bottleneck and the figures
  are the client's own cost;
- the real broker, `rmqkit serve` (ASYNC_FLUSH), as users run it.

The baseline, measured in the same run against the same fake broker, is the raw protocol client of
the broker benchmark (`broker_load.py`: callbacks, header bytes cut from a template, no decoding):
as fast as this interpreter and loopback carry frames. rmqkit figures are printed as a share of it.

- producer: `Producer.send_async` of 1 KiB messages keeping 256 sends in flight (each completion
  starts the next), for a fixed time;
- consumer: a PushConsumer with defaults (20 handler tasks, one message per call) and a no-op
  handler; against the real broker it reads a backlog stored first with batch sends.

Beside each figure: the client's CPU time per message (steadier than throughput on a shared
machine) and the cores used by the client and the server. Targets (issue 4), judged against the
fake broker, print PASS or MISS and never change the exit status: producer >= 60,000 msgs/s,
push consumer >= 80,000 msgs/s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from broker_bench import profiled
from broker_load import QUEUES, SendFrames
from broker_load import Consumer as RawConsumer
from broker_load import Pipeline as RawPipeline
from rmqkit.client.admin import AdminClient
from rmqkit.client.message import Message
from rmqkit.client.producer import Producer
from rmqkit.client.push_consumer import ConsumeContext, PushConsumer
from rmqkit.protocol.codes import RequestCode, ResponseCode
from rmqkit.protocol.command import RemotingCommand
from rmqkit.protocol.heartbeat import decode_heartbeat
from rmqkit.protocol.record import StoredMessage, encode_record, pack_host
from rmqkit.protocol.route import BrokerData, QueueData, TopicRouteData, encode_topic_route

RMQKIT = Path(sys.executable).with_name("rmqkit")
WORK_ROOT = Path(__file__).resolve().parent / ".work"
"""Scratch space on the project's own file system (git-ignored); /tmp may be a tmpfs."""
TOPIC = "ClientBench"
BODY = os.urandom(1024)
"""1 KiB, incompressible (and under the 4 KiB compression threshold)."""
WINDOW = 256
"""Producer sends in flight."""
PULL_BATCH = 32
TARGET_PRODUCER = 60_000.0
TARGET_CONSUMER = 80_000.0
SIDES = ("producer", "consumer")
"""What `--client-side` chooses from (both by default)."""
_Q_OFFSET = struct.Struct(">q")
_Q_OFFSET_AT = 20  # queue_offset in a record (see rmqkit.protocol.record)


@dataclass(slots=True)
class Plan:
    seconds: float = 5.0
    warmup_s: float = 1.0
    backlog: int = 100_000
    """Messages stored in the real broker for the consumer run."""


QUICK = Plan(seconds=2.0, warmup_s=0.5, backlog=30_000)


@dataclass(slots=True)
class Figure:
    msgs: int = 0
    seconds: float = 0.0
    msgs_s: float = 0.0
    client_cpu: float = 0.0
    """Cores used by this process (the client) over the phase."""
    server_cpu: float = 0.0
    errors: int = 0

    @property
    def client_us_per_msg(self) -> float:
        return self.client_cpu * self.seconds / self.msgs * 1e6 if self.msgs else 0.0


@dataclass(slots=True)
class Results:
    python: str = sys.version.split()[0]
    cpus: int = os.cpu_count() or 0
    figures: dict[str, Figure] = field(default_factory=dict)
    targets: list[tuple[str, bool, str]] = field(default_factory=list)


# -- the fake broker (a subprocess) -----------------------------------------------------------


def _pull_template() -> bytearray:
    host = pack_host("127.0.0.1", 10911)
    props = "TAGS\x01TagA\x02KEYS\x01order\x02UNIQ_KEY\x017F0000010001000000000000000000{:02X}\x02"
    born = int(time.time() * 1000)
    return bytearray(b"".join(
        encode_record(topic=TOPIC, body=BODY, properties=props.format(i), queue_offset=i,
                      born_timestamp=born, store_timestamp=born, born_host=host, store_host=host)
        for i in range(PULL_BATCH)
    ))  # fmt: skip


async def fake_broker() -> None:
    from rmqkit.remoting.server import RemotingServer

    server = RemotingServer("127.0.0.1", 0)
    await server.start(serving=False)
    addr = f"127.0.0.1:{server.port}"
    route = encode_topic_route(TopicRouteData(
        [QueueData("fake-broker", QUEUES, QUEUES)],
        [BrokerData("FakeCluster", "fake-broker", {0: addr})],
    ))  # fmt: skip
    template = _pull_template()
    record_size = len(template) // PULL_BATCH
    members: dict[str, set[str]] = {}
    offsets = [0] * QUEUES

    def ok(conn: object, cmd: RemotingCommand) -> RemotingCommand:
        return cmd.response(ResponseCode.SUCCESS)

    def send(conn: object, cmd: RemotingCommand) -> RemotingCommand:
        q = int(cmd.ext_fields.get("e", "0")) % QUEUES
        offsets[q] += 1
        return cmd.response(ResponseCode.SUCCESS, ext_fields={
            "msgId": "7F00000100002A9F0000000000000000", "queueId": str(q),
            "queueOffset": str(offsets[q]), "transactionId": "",
        })  # fmt: skip

    def pull(conn: object, cmd: RemotingCommand) -> RemotingCommand:
        start = int(cmd.ext_fields.get("queueOffset", "0"))
        body = bytearray(template)
        for i in range(PULL_BATCH):
            _Q_OFFSET.pack_into(body, i * record_size + _Q_OFFSET_AT, start + i)
        return cmd.response(ResponseCode.SUCCESS, body=bytes(body), ext_fields={
            "nextBeginOffset": str(start + PULL_BATCH), "minOffset": "0",
            "maxOffset": str(start + PULL_BATCH), "suggestWhichBrokerId": "0",
        })  # fmt: skip

    def heartbeat(conn: object, cmd: RemotingCommand) -> RemotingCommand:
        data = decode_heartbeat(cmd.body)
        for c in data.consumers:
            members.setdefault(c.group, set()).add(data.client_id)
        return cmd.response(ResponseCode.SUCCESS)

    def consumers(conn: object, cmd: RemotingCommand) -> RemotingCommand:
        ids = sorted(members.get(cmd.ext_fields.get("consumerGroup", ""), ()))
        return cmd.response(ResponseCode.SUCCESS, body=orjson.dumps({"consumerIdList": ids}))

    def offset_zero(conn: object, cmd: RemotingCommand) -> RemotingCommand:
        return cmd.response(ResponseCode.SUCCESS, ext_fields={"offset": "0"})

    server.register(RequestCode.GET_ROUTEINFO_BY_TOPIC,
                    lambda conn, cmd: cmd.response(ResponseCode.SUCCESS, body=route))  # fmt: skip
    for code in (RequestCode.SEND_MESSAGE_V2, RequestCode.SEND_MESSAGE):
        server.register(code, send)
    server.register(RequestCode.PULL_MESSAGE, pull)
    server.register(RequestCode.HEART_BEAT, heartbeat)
    server.register(RequestCode.GET_CONSUMER_LIST_BY_GROUP, consumers)
    for code in (RequestCode.QUERY_CONSUMER_OFFSET, RequestCode.GET_MAX_OFFSET,
                 RequestCode.SEARCH_OFFSET_BY_TIMESTAMP):  # fmt: skip
        server.register(code, offset_zero)
    for code in (RequestCode.UPDATE_CONSUMER_OFFSET, RequestCode.UNREGISTER_CLIENT,
                 RequestCode.CONSUMER_SEND_MSG_BACK):  # fmt: skip
        server.register(code, ok)
    await server.start()
    print(f"fake broker listening on {addr}", flush=True)
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    loop.add_signal_handler(signal.SIGTERM, stop.set_result, None)
    await stop
    await server.stop()


# -- processes --------------------------------------------------------------------------------


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    addr: str
    """The NameServer address (the fake broker is its own NameServer)."""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _start(args: list[str], pattern: str, what: str, work: Path) -> Server:
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=(work / f"{what}.log").open("wb"),
                            cwd=str(work))  # fmt: skip
    assert proc.stdout is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stdout.readline().decode()
        if not line:
            break
        m = re.search(pattern, line)
        if m:
            return Server(proc, m.group(1).rstrip(","))
    proc.kill()
    raise RuntimeError(f"the {what} did not start (exit {proc.poll()}); see {work}/{what}.log")


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Meter:
    """Messages, wall time and CPU (this process and the server) over a phase."""

    def __init__(self, server_pid: int, count: Callable[[], int]) -> None:
        self.pid, self.count = server_pid, count
        self.n0, self.t0 = count(), time.perf_counter()
        self.c0, self.s0 = time.process_time(), cpu_seconds(server_pid)

    def figure(self, errors: int = 0) -> Figure:
        wall = time.perf_counter() - self.t0
        n = self.count() - self.n0
        return Figure(n, wall, n / wall, (time.process_time() - self.c0) / wall,
                      (cpu_seconds(self.pid) - self.s0) / wall, errors)  # fmt: skip


# -- phases -----------------------------------------------------------------------------------


async def raw_sends(addr: str, seconds: float, pid: int) -> Figure:
    host, port = addr.rsplit(":", 1)
    frames = SendFrames(TOPIC)
    loop = asyncio.get_running_loop()
    _, proto = await loop.create_connection(lambda: RawPipeline(frames.frame, WINDOW), host,
                                            int(port))  # fmt: skip
    meter = Meter(pid, lambda: proto.acked)
    await proto.run(seconds)
    fig = meter.figure(proto.errors)
    assert proto.transport is not None
    proto.transport.close()
    return fig


async def raw_pulls(addr: str, seconds: float, pid: int) -> Figure:
    host, port = addr.rsplit(":", 1)
    loop = asyncio.get_running_loop()
    _, proto = await loop.create_connection(RawConsumer, host, int(port))
    proto.start()
    await asyncio.sleep(0.2)
    meter = Meter(pid, lambda: proto.received)
    await asyncio.sleep(seconds)
    fig = meter.figure(proto.errors)
    proto.stopping = True
    assert proto.transport is not None
    proto.transport.close()
    return fig


async def producer_sends(ns: str, plan: Plan, pid: int, profile: Path | None, name: str) -> Figure:
    """`send_async` with WINDOW in flight: each completion starts the next send."""
    acked = errors = in_flight = 0
    deadline = 0.0
    drained = asyncio.Event()
    async with Producer("bench-producer", ns, instance_name=f"bench-{name}") as producer:

        def launch() -> None:
            nonlocal in_flight
            in_flight += 1
            task = producer.send_async(Message(TOPIC, BODY, tags="TagA", keys=["order"]))
            task.add_done_callback(done)

        def done(task: asyncio.Future[Any]) -> None:
            nonlocal acked, errors, in_flight
            in_flight -= 1
            if task.cancelled() or task.exception() is not None:
                errors += 1
            else:
                acked += 1
            if time.perf_counter() < deadline:
                launch()
            elif in_flight == 0:
                drained.set()

        await producer.send(Message(TOPIC, BODY))  # route lookup and connection
        deadline = time.perf_counter() + plan.warmup_s + plan.seconds
        for _ in range(WINDOW):
            launch()
        await asyncio.sleep(plan.warmup_s)
        meter = Meter(pid, lambda: acked)
        with profiled(profile, os.getpid(), f"client-{name}"):
            await asyncio.sleep(plan.seconds)
        fig = meter.figure()
        await drained.wait()
    fig.errors = errors
    return fig


async def consumer_reads(ns: str, plan: Plan, pid: int, profile: Path | None, name: str,
                         backlog: int | None = None) -> Figure:  # fmt: skip
    """A PushConsumer with a no-op handler; with `backlog`, until that many have arrived."""
    count = 0

    async def handler(batch: list[StoredMessage], ctx: ConsumeContext) -> None:
        nonlocal count
        count += len(batch)

    c = PushConsumer(f"bench-consumer-{name}", ns, instance_name=f"bench-{name}",
                     consume_from_where="CONSUME_FROM_FIRST_OFFSET")  # fmt: skip
    c.subscribe(TOPIC)
    c.register(handler)
    async with c:
        if backlog is None:
            while count == 0:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            await asyncio.sleep(plan.warmup_s)
            meter = Meter(pid, lambda: count)
            with profiled(profile, os.getpid(), f"client-{name}"):
                await asyncio.sleep(plan.seconds)
            return meter.figure()
        while count == 0:  # noqa: ASYNC110
            await asyncio.sleep(0.005)
        meter = Meter(pid, lambda: count)
        until = time.monotonic() + 120
        while count < backlog and time.monotonic() < until:  # noqa: ASYNC110
            await asyncio.sleep(0.005)
        return meter.figure(max(0, backlog - count))


async def preload(ns: str, n: int) -> None:
    async with Producer("bench-loader", ns, instance_name="bench-loader") as p:
        batch = [Message(TOPIC, BODY, tags="TagA") for _ in range(32)]
        window = [p.send_batch(batch) for _ in range(n // 32)]
        for i in range(0, len(window), 16):
            await asyncio.gather(*window[i : i + 16])


async def run_all(
    plan: Plan, work: Path, profile: Path | None, sides: tuple[str, ...] = SIDES,
    real_broker: bool = True,
) -> Results:  # fmt: skip
    res = Results()
    fake = _start([sys.executable, __file__, "--fake-broker"],
                  r"fake broker listening on (\S+:\d+)", "fake-broker", work)  # fmt: skip
    try:
        pid = fake.proc.pid
        if "producer" in sides:
            res.figures["raw sends"] = await raw_sends(fake.addr, plan.seconds, pid)
        if "consumer" in sides:
            res.figures["raw pulls"] = await raw_pulls(fake.addr, plan.seconds, pid)
        if "producer" in sides:
            res.figures["producer, fake"] = await producer_sends(fake.addr, plan, pid, profile,
                                                                 "producer")  # fmt: skip
        if "consumer" in sides:
            res.figures["consumer, fake"] = await consumer_reads(fake.addr, plan, pid, profile,
                                                                 "consumer")  # fmt: skip
    finally:
        fake.stop()
    if real_broker:
        await _real_broker(res, plan, work, sides)
    p, c = res.figures.get("producer, fake"), res.figures.get("consumer, fake")
    if p is not None:
        res.targets.append((f"producer >= {TARGET_PRODUCER:,.0f} msgs/s (fake broker)",
                            p.msgs_s >= TARGET_PRODUCER and not p.errors,
                            f"{p.msgs_s:,.0f} msgs/s"))  # fmt: skip
    if c is not None:
        res.targets.append((f"push consumer >= {TARGET_CONSUMER:,.0f} msgs/s (fake broker)",
                            c.msgs_s >= TARGET_CONSUMER, f"{c.msgs_s:,.0f} msgs/s"))  # fmt: skip
    return res


async def _real_broker(res: Results, plan: Plan, work: Path, sides: tuple[str, ...]) -> None:
    data = work / "broker"
    data.mkdir()
    real = _start([str(RMQKIT), "serve", "--port", "0", "--namesrv-port", "0", "--data-dir",
                   str(data)], r"NameServer on (\S+:\d+)", "broker", work)  # fmt: skip
    try:
        pid = real.proc.pid
        async with AdminClient(real.addr, instance_name="bench-admin") as admin:
            await admin.create_topic(TOPIC, queues=QUEUES)
        if "producer" in sides:
            res.figures["producer, broker"] = await producer_sends(real.addr, plan, pid, None,
                                                                   "real")  # fmt: skip
        if "consumer" in sides:
            await preload(real.addr, plan.backlog)
            res.figures["consumer, broker"] = await consumer_reads(
                real.addr, plan, pid, None, "real", backlog=plan.backlog
            )
    finally:
        real.stop()


def report(res: Results, out: Callable[[str], None]) -> None:
    f = res.figures
    out(f"python {res.python}, {res.cpus} cpus; 1 KiB bodies, {QUEUES} queues; producer: "
        f"send_async, {WINDOW} in flight; consumer: PushConsumer defaults, no-op "
        "handler")  # fmt: skip

    def line(name: str, fig: Figure, base: Figure | None) -> str:
        ratio = f"{fig.msgs_s / base.msgs_s:6.1%} of raw" if base and base.msgs_s else " " * 13
        errs = f"  {fig.errors} errors" if fig.errors else ""
        cpu, cc, sc = fig.client_us_per_msg, fig.client_cpu, fig.server_cpu
        return (f"  {name:<18}{fig.msgs_s:>10,.0f} msgs/s  {ratio}  client {cpu:5.1f} us cpu/msg"
                f"  cores: client {cc:.2f} server {sc:.2f}{errs}")  # fmt: skip

    rows = [
        ("baseline: raw protocol client (broker_load.py) against the fake broker",
         [("sends", "raw sends", None), ("pulls", "raw pulls", None)]),
        ("rmqkit against the fake broker (the client's own cost):",
         [("Producer", "producer, fake", "raw sends"),
          ("PushConsumer", "consumer, fake", "raw pulls")]),
        ("rmqkit against the real broker (rmqkit serve, ASYNC_FLUSH):",
         [("Producer", "producer, broker", "raw sends"),
          ("PushConsumer", "consumer, broker", "raw pulls")]),
    ]  # fmt: skip
    for title, figs in rows:
        shown = [(label, f[key], f.get(base or "")) for label, key, base in figs if key in f]
        if shown:
            out(title)
        for label, fig, base_fig in shown:
            out(line(label, fig, base_fig))
    out("targets (informational):")
    for name, ok, got in res.targets:
        out(f"  {'PASS' if ok else 'MISS'}  {name}: {got}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="shorter phases (about 25 s in all)")
    ap.add_argument("--json", type=Path, help='also write the figures to this file, as "client"')
    ap.add_argument("--profile", type=Path, help="py-spy the client phases into this folder")
    ap.add_argument("--client-side", choices=SIDES, help="only the producer or the consumer")
    ap.add_argument("--fake-only", action="store_true", help="leave out the real broker phases")
    ap.add_argument("--fake-broker", action="store_true", help=argparse.SUPPRESS)
    args, _ = ap.parse_known_args(argv)  # run.py passes the other benchmarks' options too
    if args.fake_broker:
        asyncio.run(fake_broker())
        return 0
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    plan = QUICK if args.quick else Plan()
    WORK_ROOT.mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="client-", dir=WORK_ROOT))
    try:
        sides = (args.client_side,) if args.client_side else SIDES
        res = asyncio.run(run_all(plan, work, args.profile, sides, not args.fake_only))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(res, print)
    if args.json:
        data: dict[str, Any] = {}
        with contextlib.suppress(OSError, ValueError):
            old = json.loads(args.json.read_text())
            data = old if isinstance(old, dict) else {}
        data["client"] = asdict(res)
        args.json.write_text(json.dumps(data, indent=2, default=str))
    return 0


if __name__ == "__main__":
    # SIGTERM (a timeout, a CI job cancelled) unwinds like Ctrl-C: the servers started are stopped.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    sys.exit(main())
