"""Starter overhead: consume throughput of `@rocket_listener` against a raw `PushConsumer`.

    python benchmarks/starter_bench.py [--quick] [--messages N] [--rounds R] [--json FILE]

A broker runs in its own process (`rmqkit serve`, ASYNC_FLUSH); N JSON orders are stored first,
then each consumer group reads all of them from the first offset, in R rounds (3 by default, 1
with --quick) of three new groups each; the figures printed are the rounds' medians, each ratio
the median of the rounds' ratios to the raw figure of the same round:

- raw: a `PushConsumer` whose handler only counts (the baseline, measured in the same run);
- pydantic: a listener whose payload is a pydantic model (decode + validate + MessageMeta);
- idempotent: the same, plus `idempotency_key="auto"` in a SQLite store (one acquire and one
  complete per message, group-committed: one transaction per event-loop turn).

Targets (issue 6): pydantic >= 70% of raw; idempotent >= 40% of raw. They print PASS or MISS and
never change the exit status.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from pydantic import BaseModel

from rmqkit.client.message import Message
from rmqkit.client.producer import Producer
from rmqkit.client.push_consumer import ConsumeContext, PushConsumer
from rmqkit.protocol.record import StoredMessage
from rmqkit.starter import ListenerRegistry, RocketApp, RocketSettings, rocket_listener
from rmqkit.starter.idempotency import SqliteIdempotencyStore
from rmqkit.starter.meta import IDEMPOTENCY_KEY

RMQKIT = Path(sys.executable).with_name("rmqkit")
TOPIC = "bench-orders"
CONCURRENCY = 64  # rocketmq-spring's consumeThreadMax default
TARGETS = {"pydantic": 0.70, "idempotent": 0.40}


class Order(BaseModel):
    order_id: str
    customer: str
    amount_cents: int
    items: list[str]


def start_broker(work: Path) -> tuple[subprocess.Popen[bytes], str]:
    data = work / "broker"
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    proc = subprocess.Popen(
        [str(RMQKIT), "serve", "--port", "0", "--namesrv-port", "0", "--data-dir", str(data)],
        stdout=subprocess.PIPE, stderr=(data / "broker.log").open("wb"), cwd=str(data),
    )  # fmt: skip
    assert proc.stdout is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        m = re.search(r"NameServer on (\S+:\d+)", proc.stdout.readline().decode())
        if m:
            return proc, m.group(1)
    proc.kill()
    raise RuntimeError("the broker did not start")


async def preload(ns: str, n: int) -> None:
    async with Producer("bench-loader", ns) as p:
        batch: list[Message] = []
        for i in range(n):
            body = Order(order_id=f"o-{i}", customer=f"c-{i % 97}", amount_cents=i % 10_000,
                         items=["book", "pen"]).model_dump_json().encode()  # fmt: skip
            batch.append(Message(TOPIC, body, tags="created", keys=[f"o-{i}"],
                                 properties={IDEMPOTENCY_KEY: f"o-{i}"}))  # fmt: skip
            if len(batch) == 100:
                await p.send_batch(batch)
                batch = []
        if batch:
            await p.send_batch(batch)


async def _timed(n: int, done: Callable[[], int], run: Callable[[], Awaitable[None]]) -> float:
    """Messages per second until `done()` reaches n (from the first message on)."""
    task = asyncio.create_task(run())
    start = None
    while done() < n:
        if start is None and done() > 0:
            start = time.perf_counter()
        await asyncio.sleep(0.005)
        if task.done():
            task.result()
    elapsed = time.perf_counter() - (start or time.perf_counter())
    task.cancel()  # stops the consumer (it drains what it holds) before the caller cleans up
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return n / max(elapsed, 1e-9)


async def raw(ns: str, n: int, *, group: str = "bench-raw") -> float:
    count = 0
    stop = asyncio.Event()

    async def handler(batch: list[StoredMessage], ctx: ConsumeContext) -> None:
        nonlocal count
        count += len(batch)

    c = PushConsumer(group, ns, consume_from_where="CONSUME_FROM_FIRST_OFFSET",
                     consume_concurrency=CONCURRENCY)  # fmt: skip
    c.subscribe(TOPIC)
    c.register(handler)

    async def run() -> None:
        async with c:
            await stop.wait()

    rate = await _timed(n, lambda: count, run)
    return rate


async def starter(
    ns: str, n: int, work: Path, *, idempotent: bool, group: str | None = None
) -> float:
    reg = ListenerRegistry()
    count = 0
    group = group or ("bench-idem" if idempotent else "bench-pydantic")

    @rocket_listener(topic=TOPIC, group=group, registry=reg, consume_concurrency=CONCURRENCY,
                     consume_from_where="CONSUME_FROM_FIRST_OFFSET",
                     idempotency_key="auto" if idempotent else None)  # fmt: skip
    async def on_order(order: Order) -> None:
        nonlocal count
        count += 1

    store = SqliteIdempotencyStore(work / f"{group}.db")
    settings = RocketSettings(name_server=ns, tracing_enabled=False, _env_file=None)

    async def run() -> None:
        async with RocketApp(settings, listeners=reg, idempotency_store=store):
            await asyncio.Event().wait()

    try:
        return await _timed(n, lambda: count, run)
    finally:
        await store.close()


async def run_all(n: int, work: Path, rounds: int = 1) -> list[dict[str, float]]:
    """Figures of each round; every round reads the same stored messages in three new groups."""
    proc, ns = start_broker(work)
    try:
        await preload(ns, n)
        results = []
        for r in range(rounds):
            figures = {"raw": await raw(ns, n, group=f"bench-raw-{r}")}
            figures["pydantic"] = await starter(ns, n, work, idempotent=False,
                                                group=f"bench-pydantic-{r}")  # fmt: skip
            figures["idempotent"] = await starter(ns, n, work, idempotent=True,
                                                  group=f"bench-idem-{r}")  # fmt: skip
            results.append(figures)
            if rounds > 1:
                print(f"  round {r + 1}: " + ", ".join(f"{k} {v:,.0f}" for k, v in figures.items())
                      + f" msgs/s; ratios {figures['pydantic'] / figures['raw']:.2f}, "
                      f"{figures['idempotent'] / figures['raw']:.2f}", flush=True)  # fmt: skip
        return results
    finally:
        proc.terminate()
        proc.wait(30)


def medians(rounds: list[dict[str, float]]) -> dict[str, float]:
    """Median msgs/s per measure, and `<measure>_ratio`: the median of the per-round ratios."""
    out = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
    for k in TARGETS:
        out[f"{k}_ratio"] = statistics.median(r[k] / r["raw"] for r in rounds)
    return out


def report(figures: dict[str, float], n: int, rounds: int = 1) -> None:
    base = figures["raw"]
    of = f", medians of {rounds} rounds" if rounds > 1 else ""
    print(f"starter consume throughput, {n} messages, {CONCURRENCY} handlers at once{of}:")
    print(f"  raw PushConsumer (baseline)      {base:10,.0f} msgs/s")
    for name, label in (("pydantic", "listener, pydantic payload"),
                        ("idempotent", "  + idempotency (SQLite)")):  # fmt: skip
        ratio = figures.get(f"{name}_ratio", figures[name] / base)
        verdict = "PASS" if ratio >= TARGETS[name] else "MISS"
        print(f"  {label:32} {figures[name]:10,.0f} msgs/s  {ratio:5.2f}x raw   "
              f"target >= {TARGETS[name]:.2f}x: {verdict}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer messages")
    ap.add_argument("--messages", type=int, default=None, help="messages per consumer group")
    ap.add_argument("--rounds", type=int, default=None, help="rounds to take medians of")
    ap.add_argument("--json", type=Path, help='also write the figures to this file, as "starter"')
    args, _ = ap.parse_known_args(argv)
    n = args.messages or (4_000 if args.quick else 20_000)
    rounds = max(1, args.rounds or (1 if args.quick else 3))
    with tempfile.TemporaryDirectory(prefix="rmqkit-starter-bench-") as tmp:
        figures = medians(asyncio.run(run_all(n, Path(tmp), rounds)))
    report(figures, n, rounds)
    if args.json:
        data = json.loads(args.json.read_text()) if args.json.exists() else {}
        data["starter"] = figures
        args.json.write_text(json.dumps(data, indent=2))
    return 0


if __name__ == "__main__":
    # SIGTERM (a timeout, a CI job cancelled) unwinds like Ctrl-C: the servers started are stopped.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    sys.exit(main())
