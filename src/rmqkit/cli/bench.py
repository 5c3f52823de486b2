"""`rmqkit bench producer|consumer`: load a cluster and report what the client sees, modelled on
RocketMQ's benchmark tools (`example/benchmark/Producer.java`, `Consumer.java`).

The producer runs `--tasks` coroutines, each sending one message (or one batch) at a time, so
`--tasks` is the number of sends in flight. Every second it prints the send TPS, average and
maximum RT and the failures of that second; a live progress line (rich) shows the totals; a
`[Complete]` summary ends the run. The consumer is a PushConsumer with `--tasks` handler calls at
once and reports the consume TPS and the born-to-consume (B2C) and store-to-consume (S2C)
latency, as RocketMQ's does.
"""

from __future__ import annotations

import asyncio
import os
import random
import string
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from rmqkit.client.message import Message
from rmqkit.client.producer import Producer
from rmqkit.client.push_consumer import ConsumeContext, ConsumeFrom, ConsumeResult, PushConsumer
from rmqkit.errors import BrokerResponseError, RmqkitError
from rmqkit.protocol.record import StoredMessage

DEFAULT_TOPIC = "BenchmarkTest"
FIRST: ConsumeFrom = "CONSUME_FROM_FIRST_OFFSET"
DEFAULT_SECONDS = 10.0
"""How long a run lasts when neither --duration nor --count is given."""


@dataclass(slots=True)
class Stats:
    """Counters of a run; `take()` returns and resets the per-second part."""

    ok: int = 0
    send_failed: int = 0
    response_failed: int = 0
    rt_total_ms: float = 0.0
    rt_max_ms: float = 0.0
    s2c_total_ms: float = 0.0
    s2c_max_ms: float = 0.0
    window: list[float] = field(default_factory=lambda: [0, 0, 0.0, 0.0, 0.0, 0.0])
    """ok, failed, rt total, rt max, s2c total, s2c max: of the current second."""

    def success(self, n: int, rt_ms: float, s2c_ms: float = 0.0) -> None:
        self.ok += n
        self.rt_total_ms += rt_ms * n
        self.rt_max_ms = max(self.rt_max_ms, rt_ms)
        self.s2c_total_ms += s2c_ms * n
        self.s2c_max_ms = max(self.s2c_max_ms, s2c_ms)
        w = self.window
        w[0] += n
        w[2] += rt_ms * n
        w[3] = max(w[3], rt_ms)
        w[4] += s2c_ms * n
        w[5] = max(w[5], s2c_ms)

    def failure(self, n: int, *, response: bool) -> None:
        if response:
            self.response_failed += n
        else:
            self.send_failed += n
        self.window[1] += n

    def take(self) -> list[float]:
        w, self.window = self.window, [0, 0, 0.0, 0.0, 0.0, 0.0]
        return w

    @property
    def failed(self) -> int:
        return self.send_failed + self.response_failed


def _now() -> str:
    return datetime.now().strftime("%Y-%m-%d %H:%M:%S")


def _body(size: int) -> bytes:
    return "".join(random.choices(string.ascii_letters + string.digits, k=size)).encode()


class Reporter:
    """A line a second, a live progress line under them, and the end condition of the run."""

    def __init__(self, console: Console, seconds: float | None, count: int | None, live: bool):
        self.console = console
        self.seconds = seconds
        self.count = count
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
            TextColumn("{task.fields[totals]}"), console=console, transient=True,
            disable=not (live and console.is_terminal),
        )  # fmt: skip
        self.task: TaskID | None = None
        self.started = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def done(self, finished: int) -> bool:
        if self.count is not None:
            return finished >= self.count
        return self.elapsed() >= (self.seconds or DEFAULT_SECONDS)

    async def run(self, what: str, stats: Stats, line: Callable[[list[float]], str],
                  stop: asyncio.Event, finished: Callable[[], int]) -> None:  # fmt: skip
        """Report every second until `stop` is set or `finished()` says the run is over, then
        set `stop`."""
        total = float(self.count) if self.count is not None else (self.seconds or DEFAULT_SECONDS)
        with self.progress:
            self.task = self.progress.add_task(what, total=total, totals="")
            next_tick = self.started + 1.0
            while not stop.is_set():
                n = finished()
                if self.done(n):
                    stop.set()
                    break
                now = time.perf_counter()
                if now >= next_tick:
                    next_tick += 1.0
                    self.console.print(line(stats.take()), soft_wrap=True, highlight=False,
                                       markup=False)  # fmt: skip
                done_part = n if self.count is not None else min(self.elapsed(), total)
                totals = f"ok {stats.ok:,}  failed {stats.failed:,}"
                self.progress.update(self.task, completed=done_part, totals=totals)
                await asyncio.sleep(0.05)


# -- producer ---------------------------------------------------------------------------------


async def run_producer(
    console: Console, namesrv: str, topic: str, tasks: int, size: int, tag: str | None,
    keys: bool, batch: int, delay_level: int, seconds: float | None, count: int | None,
    live: bool,
) -> Stats:  # fmt: skip
    """Send until the duration or count is reached; returns the counters."""
    body = _body(size)
    stats = Stats()
    stop = asyncio.Event()
    claimed = 0  # messages handed to a task, so --count is never exceeded

    def claim() -> int:
        nonlocal claimed
        n = batch if count is None else min(batch, count - claimed)
        claimed += max(n, 0)
        return n

    def build() -> Message:
        return Message(topic, body, tags=tag, keys=[str(int(time.time()))] if keys else [],
                       delay_level=delay_level)  # fmt: skip

    producer = Producer("benchmark_producer", namesrv, instance_name=f"bench-{os.getpid()}-"
                        f"{time.monotonic_ns()}", compress_msg_body_over_bytes=1 << 30)  # fmt: skip

    async def sender() -> None:
        while not stop.is_set():
            n = claim()
            if n <= 0:
                return
            msgs = [build() for _ in range(n)]
            t0 = time.perf_counter()
            try:
                if n == 1:
                    await producer.send(msgs[0])
                else:
                    await producer.send_batch(msgs)
            except BrokerResponseError:
                stats.failure(n, response=True)
            except RmqkitError:
                stats.failure(n, response=False)
                await asyncio.sleep(0.1)  # a connection problem: do not spin
            else:
                stats.success(n, (time.perf_counter() - t0) * 1000)

    def line(w: list[float]) -> str:
        avg = w[2] / w[0] if w[0] else 0.0
        return (f"Current Time: {_now()} | Send TPS: {int(w[0])} | Max RT(ms): {w[3]:.1f} | "
                f"Average RT(ms): {avg:7.3f} | Send Failed: {int(w[1])} | "
                f"Response Failed: {stats.response_failed}")  # fmt: skip

    reporter = Reporter(console, seconds, count, live)
    async with producer:
        senders = [asyncio.create_task(sender()) for _ in range(tasks)]
        await reporter.run("sending", stats, line, stop, lambda: stats.ok + stats.failed)
        await asyncio.gather(*senders)
        elapsed = reporter.elapsed()
    tps = stats.ok / elapsed if elapsed > 0 else 0.0
    avg = stats.rt_total_ms / stats.ok if stats.ok else 0.0
    console.print(
        f"[Complete] Send Total: {stats.ok + stats.failed} | Send TPS: {int(tps)} | "
        f"Max RT(ms): {stats.rt_max_ms:.1f} | Average RT(ms): {avg:7.3f} | "
        f"Send Failed: {stats.send_failed} | Response Failed: {stats.response_failed}",
        soft_wrap=True, highlight=False, markup=False,
    )  # fmt: skip
    return stats


# -- consumer ---------------------------------------------------------------------------------


async def run_consumer(
    console: Console, namesrv: str, topic: str, group: str, tasks: int, expression: str,
    from_first: bool, fail_rate: float, seconds: float | None, count: int | None, live: bool,
) -> Stats:  # fmt: skip
    """Consume until the duration or count is reached; returns the counters (RT: B2C)."""
    stats = Stats()
    stop = asyncio.Event()

    async def handle(msgs: list[StoredMessage], ctx: ConsumeContext) -> ConsumeResult:
        now_ms = time.time() * 1000
        for m in msgs:
            stats.success(1, now_ms - m.born_timestamp, now_ms - m.store_timestamp)
        if fail_rate and random.random() < fail_rate:
            stats.failure(len(msgs), response=True)
            return ConsumeResult.RECONSUME_LATER
        return ConsumeResult.SUCCESS

    consumer = PushConsumer(
        group, namesrv, instance_name=f"bench-{os.getpid()}-{time.monotonic_ns()}",
        consume_concurrency=tasks,
        consume_from_where=FIRST if from_first else "CONSUME_FROM_LAST_OFFSET",
    )  # fmt: skip
    consumer.subscribe(topic, expression)
    consumer.register(handle)

    def line(w: list[float]) -> str:
        n = w[0]
        return (f"Current Time: {_now()} | Consume TPS: {int(n)} | AVG(B2C) RT(ms): "
                f"{w[2] / n if n else 0.0:7.3f} | AVG(S2C) RT(ms): {w[4] / n if n else 0.0:7.3f} "
                f"| MAX(B2C) RT(ms): {int(w[3])} | MAX(S2C) RT(ms): {int(w[5])} | "
                f"Consume Fail: {int(w[1])}")  # fmt: skip

    reporter = Reporter(console, seconds, count, live)
    async with consumer:
        await reporter.run("consuming", stats, line, stop, lambda: stats.ok)
        elapsed = reporter.elapsed()
    tps = stats.ok / elapsed if elapsed > 0 else 0.0
    n = stats.ok
    console.print(
        f"[Complete] Consume Total: {n} | Consume TPS: {int(tps)} | AVG(B2C) RT(ms): "
        f"{stats.rt_total_ms / n if n else 0.0:7.3f} | MAX(B2C) RT(ms): {int(stats.rt_max_ms)} | "
        f"AVG(S2C) RT(ms): {stats.s2c_total_ms / n if n else 0.0:7.3f} | MAX(S2C) RT(ms): "
        f"{int(stats.s2c_max_ms)} | Consume Fail: {stats.failed}",
        soft_wrap=True, highlight=False, markup=False,
    )  # fmt: skip
    return stats


# -- click ------------------------------------------------------------------------------------

_namesrv = click.option("-n", "--namesrv", default="127.0.0.1:9876", show_default=True,
                        help="NameServers, host:port;host:port.")  # fmt: skip
_topic = click.option("-t", "--topic", default=DEFAULT_TOPIC, show_default=True)
_duration = click.option(
    "--duration", type=float, default=None,
    help=f"Seconds to run (default {DEFAULT_SECONDS:g} without --count).",
)  # fmt: skip
_count = click.option("-q", "--count", type=click.IntRange(min=1), default=None,
                      help="Messages in all, then stop.")  # fmt: skip
_progress = click.option("--progress/--no-progress", default=True, show_default=True,
                         help="The live progress line (only on a terminal).")  # fmt: skip


@click.group("bench")
def bench_group() -> None:
    """Load a cluster as RocketMQ's benchmark tools do and report TPS and latency."""


@bench_group.command("producer")
@_namesrv
@_topic
@click.option("-w", "--tasks", type=click.IntRange(min=1), default=64, show_default=True,
              help="Sends in flight (RocketMQ's threadCount).")  # fmt: skip
@click.option("-s", "--message-size", type=click.IntRange(min=1), default=128, show_default=True,
              help="Body bytes.")  # fmt: skip
@click.option("--tag", default=None, help="Tag of every message.")
@click.option("-k", "--keys", is_flag=True, help="Give every message a key.")
@click.option("-b", "--batch-size", type=click.IntRange(min=1), default=1, show_default=True,
              help="Messages per request (SEND_BATCH_MESSAGE above 1).")  # fmt: skip
@click.option("-e", "--delay-level", type=click.IntRange(0, 18), default=0, show_default=True,
              help="Delay level of every message (0: none).")  # fmt: skip
@_duration
@_count
@_progress
def producer_command(namesrv: str, topic: str, tasks: int, message_size: int, tag: str | None,
                     keys: bool, batch_size: int, delay_level: int, duration: float | None,
                     count: int | None, progress: bool) -> None:  # fmt: skip
    """Send messages as fast as the cluster takes them."""
    if batch_size > 1 and delay_level:
        raise click.BadParameter("a batch cannot hold delayed messages", param_hint="--batch-size")
    console = Console(highlight=False)
    console.print(f"topic: {topic}, tasks: {tasks}, messageSize: {message_size}, tag: {tag}, "
                  f"keys: {keys}, batchSize: {batch_size}, delayLevel: {delay_level}, "
                  f"duration: {duration}, count: {count}, namesrv: {namesrv}",
                  soft_wrap=True, markup=False)  # fmt: skip
    work = run_producer(console, namesrv, topic, tasks, message_size, tag, keys, batch_size,
                        delay_level, duration, count, progress)  # fmt: skip
    stats = asyncio.run(work)
    if stats.ok == 0:
        raise SystemExit(1)


@bench_group.command("consumer")
@_namesrv
@_topic
@click.option("-g", "--group", default="benchmark_consumer", show_default=True)
@click.option("-w", "--tasks", type=click.IntRange(min=1), default=20, show_default=True,
              help="Handler calls at once (RocketMQ's threadCount).")  # fmt: skip
@click.option("--expression", default="*", show_default=True, help="Tag expression.")
@click.option("--from-first", is_flag=True, help="A new group starts at the first message.")
@click.option("-r", "--fail-rate", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Share of batches answered RECONSUME_LATER.")  # fmt: skip
@_duration
@_count
@_progress
def consumer_command(namesrv: str, topic: str, group: str, tasks: int, expression: str,
                     from_first: bool, fail_rate: float, duration: float | None,
                     count: int | None, progress: bool) -> None:  # fmt: skip
    """Consume a topic with a no-op handler and report TPS and latency."""
    console = Console(highlight=False)
    console.print(f"topic: {topic}, tasks: {tasks}, group: {group}, expression: {expression}, "
                  f"failRate: {fail_rate}, duration: {duration}, count: {count}, "
                  f"namesrv: {namesrv}", soft_wrap=True, markup=False)  # fmt: skip
    asyncio.run(run_consumer(console, namesrv, topic, group, tasks, expression, from_first,
                             fail_rate, duration, count, progress))  # fmt: skip
