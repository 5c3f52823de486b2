"""Running the writer subprocess of the crash tests and killing it (`writer.py` is the child)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path

from rmqkit.testing import check_for
from tests.crash.writer import Ack, FlushType

REPO_ROOT = Path(__file__).resolve().parents[2]
WRITER_TIMEOUT_S = 20.0
"""The writer stops by itself after this long; no test waits for it longer either."""

AckedKey = tuple[str, int, int]


def crash_seed() -> int:
    """RMQKIT_CRASH_SEED replays a run; else a fresh seed (every assertion message shows it)."""
    env = os.environ.get("RMQKIT_CRASH_SEED")
    return int(env) if env else random.randrange(2**32)


@dataclass(slots=True)
class WriterOutput:
    """What a writer printed before it died."""

    ready: bool = False
    acks: list[Ack] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    returncode: int | None = None


async def run_writer(
    root: Path,
    flush: FlushType,
    seed: int,
    round_no: int,
    *,
    ctx: str,
    concurrency: int = 16,
    kill_after: int | None = None,
    die_at: str | None = None,
) -> WriterOutput:
    """Run a writer on the store at `root` until it is killed, and return all it printed.

    With `kill_after`, poll its output until it has acknowledged that many messages, then SIGKILL
    it. With `die_at`, wait for it to kill itself inside that file-sizing window.
    """
    out = WriterOutput()
    stderr_path = root.parent / f"writer-{round_no}.err"
    cmd = [sys.executable, "-m", "tests.crash.writer", str(root), flush, str(seed), str(round_no)]
    cmd += ["--concurrency", str(concurrency), "--max-seconds", str(WRITER_TIMEOUT_S)]
    if die_at:
        cmd += ["--die-at", die_at]
    with stderr_path.open("wb") as err:
        proc = await asyncio.create_subprocess_exec(
            *cmd, stdout=asyncio.subprocess.PIPE, stderr=err, cwd=REPO_ROOT
        )

        async def read() -> None:
            assert proc.stdout is not None
            async for raw in proc.stdout:
                line = raw.decode("ascii")
                if line.startswith("ACK "):
                    out.acks.append(Ack.parse(line))
                elif line.startswith("READY"):
                    out.ready = True
                elif line.startswith("FAIL"):
                    out.failures.append(line)

        reader = asyncio.create_task(read())
        try:
            await check_for(
                lambda: (
                    reader.done()
                    or (kill_after is not None and out.ready and len(out.acks) >= kill_after)
                ),
                timeout=WRITER_TIMEOUT_S + 5,
                interval=0.005,
                message=f"{ctx}: writer reached neither {kill_after} acks nor its end",
            )
            died_alone = reader.done()
        finally:
            if proc.returncode is None and not reader.done():  # its stdout is open: alive
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
            out.returncode = await proc.wait()
            await reader
    what = f"{ctx}: writer (exit {out.returncode}) stderr: {stderr_path.read_text()[-3000:]}"
    assert out.returncode == -signal.SIGKILL, what
    assert died_alone == (die_at is not None), what
    assert not out.failures, f"{ctx}: writer puts failed: {out.failures[:3]}"
    return out


def add_acks(acked: dict[AckedKey, Ack], new: list[Ack], ctx: str) -> None:
    """Record new acknowledgements; an offset acknowledged twice means an earlier one was lost."""
    for a in new:
        key = (a.topic, a.queue_id, a.queue_offset)
        old = acked.get(key)
        assert old is None, f"{ctx}: {key} acknowledged for {old} and again for {a}"
        acked[key] = a
