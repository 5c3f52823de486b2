"""A full disk: the store refuses writes with DISK_FULL and goes on once there is room.

Written through a mapping, a page the file system has no room for kills the process with
SIGBUS. The store allocates its blocks first (`MappedFile.reserve`), so the send is refused
instead. The child (`disk_full.py`) runs on a tmpfs of 24 MiB, mounted in a user and mount
namespace of its own (`unshare`), which needs no privileges and vanishes with the child.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from tests.crash.harness import REPO_ROOT

pytestmark = pytest.mark.crash

FS_BYTES = 24 << 20
MOUNT_AND_RUN = (
    'mount -t tmpfs -o size="$1" tmpfs "$2" && exec "$3" -m tests.crash.disk_full "$2" "$4"'
)


def _namespaces_work(tmp_path: Path) -> str | None:
    """Why a tmpfs cannot be mounted in a namespace here, or None when it can."""
    if shutil.which("unshare") is None:
        return "util-linux's unshare is not installed"
    probe = subprocess.run(
        ["unshare", "-rm", "sh", "-c", 'mount -t tmpfs -o size=1m tmpfs "$1"', "sh", tmp_path],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return None if probe.returncode == 0 else f"unshare -rm mount failed: {probe.stderr.strip()}"


@pytest.mark.parametrize("warm", ["warm", "cold"])
def test_a_full_disk_refuses_sends_and_a_freed_one_takes_them_again(
    tmp_path: Path, warm: str
) -> None:
    why = _namespaces_work(tmp_path)
    if why is not None:
        pytest.skip(why)
    mount = tmp_path / "fs"
    mount.mkdir()
    cmd = ["unshare", "-rm", "sh", "-c", MOUNT_AND_RUN, "sh", f"{FS_BYTES}", mount]
    cmd += [sys.executable, warm]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
    what = f"exit {proc.returncode}, stderr: {proc.stderr[-3000:]}"
    assert proc.returncode != -signal.SIGBUS and proc.returncode != 128 + signal.SIGBUS, what
    assert proc.returncode == 0, what
    out = orjson.loads(proc.stdout.strip().splitlines()[-1])
    assert out["stored"] > 1000, out  # it took messages until the disk filled
    assert out["refused"] == 500, out
    assert any(r.startswith("no disk space for ") for r in out["remarks"]), out
    # Every message acknowledged before the refusals and after the room came back is in its
    # ConsumeQueue and found by key: dispatch waited, it did not skip.
    assert out["in_queues"] == out["expected_in_queues"], out
    assert out["unfound_keys"] == [], out
    assert "refusing writes: no disk space" in proc.stderr, what
