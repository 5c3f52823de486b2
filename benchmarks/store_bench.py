"""Store benchmark: CommitLog append + dispatch, group commit, read-back and RSS with a backlog.

Every figure is printed next to a baseline measured in the same run on the same disk (plain
file appends of records of the same size), because these machines drift by about 20% an hour.
Targets are informational: they print PASS or MISS and the exit status stays 0.

    python benchmarks/store_bench.py [--quick] [--backlog N] [--skip-backlog] [--json FILE]

The RSS figures come from a child process (`--rss-child`) that appends the backlog and samples
/proc/self/status as it goes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from rmqkit.common.properties import encode_properties
from rmqkit.protocol.record import encode_record
from rmqkit.server.store import FileMessageStore, GetStatus, MessageToStore, StoreSettings

WORK_ROOT = Path(__file__).resolve().parent / ".work"
"""Scratch space on the project's own file system (git-ignored); /tmp may be a tmpfs."""
TOPIC = "BenchTopic"
QUEUES = 8
BODY = os.urandom(1024)
"""1 KiB, incompressible."""
YIELD_EVERY = 32
"""Appends between two event-loop turns: a broker yields after each batch of socket reads."""
MB = 1_000_000
GROUP = 128
"""Records per fdatasync in the grouped raw baseline (= the most writers we run)."""
BATCH = 32
"""Messages per put_messages call in the batch variant of the ASYNC_FLUSH run."""

ASYNC_TARGET_MSGS = 100_000
SYNC_TARGET_RATIO = 0.5
ANON_FLAT_BYTES = 32 * 1024 * 1024
"""RssAnon may move this much between the first and the last checkpoint and count as flat."""


@dataclass(slots=True)
class Plan:
    """How much work each part does; `--quick` shrinks it."""

    async_messages: int = 1_000_000
    read_messages: int = 1_000_000
    sync_seconds: float = 5.0
    sync_writers: tuple[int, ...] = (1, 16, 128)
    raw_fsync_seconds: float = 3.0
    backlog: int = 10_000_000
    backlog_every: int = 1_000_000


QUICK = Plan(
    async_messages=200_000,
    read_messages=200_000,
    sync_seconds=2.0,
    raw_fsync_seconds=1.0,
    backlog=1_000_000,
    backlog_every=100_000,
)


@dataclass(slots=True)
class Results:
    machine: dict[str, Any] = field(default_factory=dict)
    record_bytes: int = 0
    raw: dict[str, dict[str, float]] = field(default_factory=dict)
    async_flush: dict[str, float] = field(default_factory=dict)
    async_batch: dict[str, float] = field(default_factory=dict)
    async_cold: dict[str, float] = field(default_factory=dict)
    """put_message again with warmMapedFileEnable=false: the writer takes its own page faults."""
    sync_flush: dict[int, dict[str, float]] = field(default_factory=dict)
    read: dict[str, float] = field(default_factory=dict)
    backlog: list[dict[str, int | float]] = field(default_factory=list)
    targets: list[tuple[str, bool, str]] = field(default_factory=list)


# -- messages ---------------------------------------------------------------------------------


def make_message(i: int) -> MessageToStore:
    """A realistic 1 KiB send: TAGS, one KEYS and a UNIQ_KEY (two index keys per message)."""
    props = encode_properties(
        {
            "TAGS": "TagA" if i & 1 else "TagB",
            "KEYS": f"order-{i}",
            "UNIQ_KEY": f"7F0000010B6418B4AAC2{i:012X}",
        }
    )
    return MessageToStore(TOPIC, i % QUEUES, BODY, props, born_timestamp=1_763_700_000_000)


def record_bytes_of(msg: MessageToStore) -> bytes:
    """The bytes the store writes for `msg`: the raw baseline appends records of this size."""
    return encode_record(topic=msg.topic, body=msg.body, properties=msg.properties)


def settings(root: Path, flush: Literal["ASYNC_FLUSH", "SYNC_FLUSH"]) -> StoreSettings:
    return StoreSettings(store_path_root_dir=root, flush_disk_type=flush)


# -- raw disk baselines -----------------------------------------------------------------------


def raw_append(
    path: Path, record: bytes, *, count: int = 0, seconds: float = 0.0, sync_every: int = 0
) -> tuple[int, float]:
    """Append `record` `count` times, or for `seconds`; fdatasync every `sync_every` appends."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
    try:
        write, fdatasync = os.write, os.fdatasync
        n = 0
        t0 = time.perf_counter()
        if not sync_every:
            for _ in range(count):
                write(fd, record)
            n = count
        else:
            deadline = t0 + seconds
            while time.perf_counter() < deadline:
                for _ in range(sync_every):
                    write(fd, record)
                fdatasync(fd)
                n += sync_every
        return n, time.perf_counter() - t0
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)


def bench_raw(work: Path, record: bytes, plan: Plan, res: Results) -> None:
    size = len(record)
    path = work / "raw.bin"
    runs = {
        "write": raw_append(path, record, count=plan.async_messages),
        "write+fdatasync each": raw_append(
            path, record, seconds=plan.raw_fsync_seconds, sync_every=1
        ),
        f"write+fdatasync per {GROUP}": raw_append(
            path, record, seconds=plan.raw_fsync_seconds, sync_every=GROUP
        ),
    }
    for name, (n, secs) in runs.items():
        res.raw[name] = {
            "records": n,
            "seconds": secs,
            "msgs_s": n / secs,
            "mb_s": n * size / secs / MB,
        }


# -- the store --------------------------------------------------------------------------------


async def wait_dispatched(store: FileMessageStore) -> None:
    """Yield to the loop until the reput service has dispatched everything appended."""
    reput = store.reput
    assert reput is not None
    log = store.commit_log
    while True:
        if reput.reput_offset >= log.max_offset:
            return
        await asyncio.sleep(0)  # the reput service drains on the loop, 4096 records a turn


async def bench_async(
    work: Path, msgs: list[MessageToStore], batch: int = 1, *, warm: bool = True
) -> tuple[FileMessageStore, dict[str, float]]:
    """ASYNC_FLUSH, one writer: put_message (or put_messages of `batch`) until `msgs` are in.

    The clock stops once the reput service has dispatched everything (ConsumeQueue and
    IndexFile entries exist). Returns the running store and the figures.
    """
    s = settings(work / f"async{batch}{'' if warm else 'cold'}", "ASYNC_FLUSH")
    store = FileMessageStore(s.model_copy(update={"warm_mapped_file_enable": warm}))
    await store.start()
    reput = store.reput
    assert reput is not None
    dispatch_s = 0.0
    drain = reput.drain

    def timed_drain(limit: int | None = None) -> int:
        nonlocal dispatch_s
        t = time.perf_counter()
        n = drain(limit)
        dispatch_s += time.perf_counter() - t
        return n

    reput.drain = timed_drain  # type: ignore[method-assign]
    put, put_many = store.put_message, store.put_messages
    cpu0, t0 = time.process_time(), time.perf_counter()
    if batch == 1:
        for i, m in enumerate(msgs):
            r = await put(m)
            if not r.ok:
                raise RuntimeError(f"put failed: {r.status} {r.remark}")
            if i % YIELD_EVERY == 0:
                await asyncio.sleep(0)
    else:
        for i in range(0, len(msgs), batch):
            r = await put_many(msgs[i : i + batch])
            if not r.ok:
                raise RuntimeError(f"put failed: {r.status} {r.remark}")
            await asyncio.sleep(0)
    t_appended = time.perf_counter()
    await wait_dispatched(store)
    t1, cpu1 = time.perf_counter(), time.process_time()
    reput.drain = drain  # type: ignore[method-assign]
    n, secs = len(msgs), t1 - t0
    warmer = store.warmer
    return store, {
        "warmed_mb": warmer.filled_bytes / MB if warmer else 0.0,
        "writer_waits": warmer.writer_waits if warmer else 0,
        "messages": n,
        "seconds": secs,
        "msgs_s": n / secs,
        "mb_s": store.commit_log.max_offset / secs / MB,
        "cpu_share": (cpu1 - cpu0) / secs,
        "dispatch_share": dispatch_s / secs,
        "lag_after_append_s": t1 - t_appended,
    }


async def bench_read(store: FileMessageStore, limit: int, res: Results) -> None:
    """Read back by ConsumeQueue, 32 per call, queue by queue, as pulls do."""
    per_queue = -(-limit // QUEUES)
    n = 0
    t0 = time.perf_counter()
    for q in range(QUEUES):
        off = 0
        while off < per_queue:
            g = store.get_message(TOPIC, q, off, 32)
            if g.status is not GetStatus.FOUND:
                break
            n += len(g.records)
            off = g.next_begin_offset
    secs = time.perf_counter() - t0
    res.read = {"messages": n, "seconds": secs, "msgs_s": n / secs}


async def bench_sync(
    work: Path, msgs: list[MessageToStore], writers: int, seconds: float, res: Results
) -> None:
    """SYNC_FLUSH: `writers` tasks each awaiting put_message in a loop for `seconds`.

    Writers take turns through `msgs` (built before the clock starts) and wrap around.
    """
    store = FileMessageStore(settings(work / f"sync{writers}", "SYNC_FLUSH"))
    await store.start()
    group_commit = store._group_commit  # its `groups` counter is kept for this report
    assert group_commit is not None
    latencies: list[float] = []
    done = 0
    deadline = 0.0

    async def writer(w: int) -> None:
        nonlocal done
        i = w
        clock = time.perf_counter
        count = len(msgs)
        while clock() < deadline:
            m = msgs[i % count]
            t = clock()
            r = await store.put_message(m)
            latencies.append(clock() - t)
            if not r.ok:
                raise RuntimeError(f"put failed: {r.status} {r.remark}")
            done += 1
            i += writers

    groups0 = group_commit.groups
    t0 = time.perf_counter()
    deadline = t0 + seconds
    await asyncio.gather(*(writer(w) for w in range(writers)))
    secs = time.perf_counter() - t0
    groups = group_commit.groups - groups0
    size = store.commit_log.max_offset / max(done, 1)
    await wait_dispatched(store)
    await store.stop()
    shutil.rmtree(work / f"sync{writers}", ignore_errors=True)
    qs = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
    res.sync_flush[writers] = {
        "messages": done,
        "seconds": secs,
        "msgs_s": done / secs,
        "mb_s": done * size / secs / MB,
        "per_fsync": done / max(groups, 1),
        "p50_ms": qs[49] * 1000,
        "p99_ms": qs[98] * 1000,
    }


# -- RSS with a backlog (child process) -------------------------------------------------------

_STATUS_KEYS = ("VmRSS", "RssAnon", "RssFile", "RssShmem")


def read_status() -> dict[str, int]:
    """The RSS lines of /proc/self/status, in bytes."""
    out: dict[str, int] = {}
    with open("/proc/self/status", encoding="utf-8", errors="replace") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in _STATUS_KEYS:
                out[key] = int(rest.split()[0]) * 1024
    return out


async def rss_child(root: Path, backlog: int, every: int) -> None:
    """Append `backlog` messages, printing one JSON line of RSS figures per `every` messages."""
    store = FileMessageStore(settings(root, "ASYNC_FLUSH"))
    await store.start()
    put = store.put_message
    t0 = time.perf_counter()

    def sample(n: int) -> None:
        row: dict[str, int | float] = {"messages": n, "elapsed_s": time.perf_counter() - t0}
        row.update(read_status())
        print(json.dumps(row), flush=True)

    sample(0)
    for i in range(backlog):
        r = await put(make_message(i))
        if not r.ok:
            raise RuntimeError(f"put failed: {r.status} {r.remark}")
        if i % YIELD_EVERY == 0:
            await asyncio.sleep(0)
        if (i + 1) % every == 0:
            await wait_dispatched(store)
            sample(i + 1)
    await wait_dispatched(store)
    if backlog % every:
        sample(backlog)
    await store.stop()


def bench_backlog(work: Path, plan: Plan, record_size: int, res: Results) -> str | None:
    """Run the RSS child; returns why it was skipped, or None."""
    need = plan.backlog * (record_size + 20) * 1.1
    free = shutil.disk_usage(work).free
    if need > free * 0.9:
        return f"needs {need / 1e9:.1f} GB of disk, {free / 1e9:.1f} GB free"
    root = work / "backlog"
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--rss-child",
        str(root),
        "--backlog",
        str(plan.backlog),
        "--every",
        str(plan.backlog_every),
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if proc.returncode:
        return f"the child failed ({proc.returncode}): {proc.stderr.strip()[-500:]}"
    res.backlog = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return None


# -- report -----------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "fs": _fs_of(WORK_ROOT),
    }


def _fs_of(path: Path) -> str:
    """`device fstype mountpoint` of the file system holding `path`."""
    best = ("", "", "")
    p = str(path.resolve())
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            dev, mnt, fstype = line.split()[:3]
            if (p == mnt or p.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best[1]):
                best = (dev, mnt, fstype)
    except OSError:
        return "?"
    return f"{best[0]} ({best[2]}) at {best[1]}"


def _rate(row: dict[str, float]) -> str:
    return f"{row['msgs_s']:>12,.0f} msgs/s {row['mb_s']:>9,.1f} MB/s"


def report(
    res: Results, plan: Plan, backlog_skipped: str | None, out: Callable[[str], None]
) -> None:
    m = res.machine
    out(f"machine: {m['cpus']} CPUs ({m['cpu']}), Python {m['python']}, Linux {m['kernel']}")
    out(f"disk:    {m['fs']}")
    out(f"record:  {res.record_bytes} bytes in the CommitLog per 1 KiB message (MB = 10^6 bytes)")
    out("")
    out("raw appends of the same records (same disk, same run)")
    for name, row in res.raw.items():
        out(f"  {name:<28}{_rate(row)}")
    raw_w = res.raw["write"]
    raw_each = res.raw["write+fdatasync each"]
    raw_group = res.raw[f"write+fdatasync per {GROUP}"]
    out("")
    a = res.async_flush
    out(
        f"ASYNC_FLUSH, 1 writer, {a['messages']:,.0f} messages, timed until dispatched "
        "(ConsumeQueue + IndexFile)"
    )
    rows = (
        ("put_message", a),
        (f"put_messages, {BATCH} a call", res.async_batch),
        ("put_message, not warmed", res.async_cold),
    )
    for name, row in rows:
        if row:
            warmed = (
                f"; {row['warmed_mb']:,.0f} MB zero-filled ahead, writer waited "
                f"{row['writer_waits']:.0f} times"
                if row["warmed_mb"]
                else ""
            )
            out(
                f"  {name:<28}{_rate(row)}   = {row['mb_s'] / raw_w['mb_s']:.2f} x raw write; "
                f"CPU {row['cpu_share']:.0%} of wall, dispatch {row['dispatch_share']:.0%}{warmed}"
            )
    out("")
    out(f"SYNC_FLUSH, put_message awaited per writer, {plan.sync_seconds:g} s each")
    for w, row in res.sync_flush.items():
        out(
            f"  {w:>3} writers{'':<18}{_rate(row)}   = {row['mb_s'] / raw_each['mb_s']:.2f} x "
            f"raw fdatasync each, {row['mb_s'] / raw_group['mb_s']:.2f} x per {GROUP}; "
            f"{row['per_fsync']:.1f} records/fsync, p50 {row['p50_ms']:.2f} ms, "
            f"p99 {row['p99_ms']:.2f} ms"
        )
    out("")
    r = res.read
    out(
        f"read back by ConsumeQueue (get_message, 32 per call, {QUEUES} queues): "
        f"{r['messages']:,.0f} msgs in {r['seconds']:.2f} s = {r['msgs_s']:,.0f} msgs/s"
    )
    out("")
    anon_ok: bool | None = None
    if backlog_skipped:
        out(f"backlog RSS: skipped ({backlog_skipped})")
    elif res.backlog:
        out(f"broker process RSS while a backlog of {plan.backlog:,} messages builds up (MiB)")
        out(
            f"  {'messages':>12} {'VmRSS':>9} {'RssAnon':>9} {'RssFile':>9} {'RssShmem':>9}"
            f" {'s':>7}"
        )
        for row in res.backlog:
            out(
                f"  {row['messages']:>12,} {row['VmRSS'] / 2**20:>9,.0f} "
                f"{row['RssAnon'] / 2**20:>9,.1f} {row['RssFile'] / 2**20:>9,.0f} "
                f"{row.get('RssShmem', 0) / 2**20:>9,.0f} {row['elapsed_s']:>7.1f}"
            )
        first = res.backlog[1] if len(res.backlog) > 2 else res.backlog[0]
        last = res.backlog[-1]
        growth = int(last["RssAnon"]) - int(first["RssAnon"])
        anon_ok = abs(growth) <= ANON_FLAT_BYTES
        out(
            f"  RssAnon from {first['messages']:,} to {last['messages']:,} messages: "
            f"{growth / 2**20:+.1f} MiB ({'flat' if anon_ok else 'GROWS with the backlog'})"
        )
    out("")
    res.targets = [
        (
            f"ASYNC_FLUSH append + dispatch >= {ASYNC_TARGET_MSGS:,} msgs/s",
            a["msgs_s"] >= ASYNC_TARGET_MSGS,
            f"{a['msgs_s']:,.0f} msgs/s",
        ),
    ]
    s128 = res.sync_flush.get(max(plan.sync_writers))
    if s128 is not None:
        res.targets.append(
            (
                f"SYNC_FLUSH {max(plan.sync_writers)} writers >= 50% of raw write+fdatasync each",
                s128["mb_s"] >= SYNC_TARGET_RATIO * raw_each["mb_s"],
                f"{s128['mb_s'] / raw_each['mb_s']:.0%}",
            )
        )
    if anon_ok is not None:
        res.targets.append(
            (
                f"RssAnon flat with a {plan.backlog:,}-message backlog (within "
                f"{ANON_FLAT_BYTES // 2**20} MiB)",
                anon_ok,
                "",
            )
        )
    out("targets (informational)")
    for name, ok, figure in res.targets:
        out(f"  {'PASS' if ok else 'MISS'}  {name}{': ' + figure if figure else ''}")


# -- entry points -----------------------------------------------------------------------------


@contextlib.contextmanager
def _workdir() -> Iterator[Path]:
    WORK_ROOT.mkdir(exist_ok=True)
    work = WORK_ROOT / f"store-{os.getpid()}"
    work.mkdir()
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)
        try:
            WORK_ROOT.rmdir()
        except OSError:
            pass  # another run's directory is still there


async def run_all(plan: Plan, *, skip_backlog: bool) -> Results:
    res = Results(machine=machine())
    with _workdir() as work:
        print(f"store benchmark in {work} ...", file=sys.stderr, flush=True)
        msgs = [make_message(i) for i in range(plan.async_messages)]
        record = record_bytes_of(msgs[0])
        res.record_bytes = len(record)
        bench_raw(work, record, plan, res)
        store, res.async_flush = await bench_async(work, msgs)
        await bench_read(store, plan.read_messages, res)
        await store.stop()
        shutil.rmtree(work / "async1", ignore_errors=True)
        store, res.async_batch = await bench_async(work, msgs, BATCH)
        await store.stop()
        shutil.rmtree(work / f"async{BATCH}", ignore_errors=True)
        store, res.async_cold = await bench_async(work, msgs, warm=False)
        await store.stop()
        shutil.rmtree(work / "async1cold", ignore_errors=True)
        for w in plan.sync_writers:
            await bench_sync(work, msgs, w, plan.sync_seconds, res)
        del msgs
        skipped = "--skip-backlog" if skip_backlog else bench_backlog(work, plan, len(record), res)
        res.machine["backlog_skipped"] = skipped or ""
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a smaller run (about a minute)")
    ap.add_argument("--backlog", type=int, help="messages in the RSS backlog run (default 10M)")
    ap.add_argument("--skip-backlog", action="store_true", help="leave out the RSS backlog run")
    ap.add_argument("--json", type=Path, help="also write the figures to this file")
    ap.add_argument("--rss-child", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--every", type=int, default=1_000_000, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.rss_child is not None:
        asyncio.run(rss_child(args.rss_child, args.backlog, args.every))
        return 0
    plan = Plan() if not args.quick else QUICK
    if args.backlog is not None:
        plan.backlog = args.backlog
        plan.backlog_every = max(1, min(plan.backlog_every, args.backlog // 10 or 1))
    res = asyncio.run(run_all(plan, skip_backlog=args.skip_backlog))
    report(res, plan, res.machine.get("backlog_skipped") or None, print)
    if args.json:
        args.json.write_text(json.dumps(asdict(res), indent=2, default=str))
    return 0


if __name__ == "__main__":
    # SIGTERM (a timeout, a CI job cancelled) unwinds like Ctrl-C: the servers started are stopped.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    sys.exit(main())
