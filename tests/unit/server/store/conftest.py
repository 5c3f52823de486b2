"""Small stores in tmp_path: segments of 64 KiB so tests cross file boundaries quickly."""

from __future__ import annotations

import os
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from rmqkit.common.properties import encode_properties
from rmqkit.server.store import FileMessageStore, MessageToStore, StoreSettings, mapped_file
from rmqkit.server.store.mapped_file import MappedFile, MappedFileQueue

SMALL = {
    "mapped_file_size_commit_log_bytes": 64 * 1024,
    "mapped_file_size_consume_queue_bytes": 20 * 50,
    "max_message_size_bytes": 16 * 1024,
    "max_hash_slot_num": 64,
    "max_index_num": 200,
    "flush_interval_consume_queue_ms": 20,
    "flush_interval_commit_log_ms": 20,
}


def hold_syncs(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """Hold every CommitLog sync until the returned `release` is called (or 5 s pass).

    Only a thread's fdatasync can be held up: patch `disk_sync.linux_aio` to None before the
    store starts. Call this after it started (its start syncs too)."""
    gate = threading.Event()
    real_sync = MappedFile.sync

    def stuck_sync(self: MappedFile) -> None:
        gate.wait(5)
        real_sync(self)

    def release() -> None:
        gate.set()
        monkeypatch.setattr(MappedFile, "sync", real_sync)

    monkeypatch.setattr(MappedFile, "sync", stuck_sync)
    return release


def failing_pwrite(
    monkeypatch: pytest.MonkeyPatch, queue: MappedFileQueue, code: int, after: int
) -> None:
    """`pwrite`s into the files of `queue` fail with `code` from the `after`+1th on.

    Only those: `os.pwrite` is patched for the whole process, and a store's checkpoint is
    written with it too, from its flusher's thread, at any moment.
    """
    real = os.pwrite
    calls = [0]

    def pwrite(fd: int, data: Any, pos: int) -> int:
        if any(mf.fd == fd for mf in queue.files):
            calls[0] += 1
            if calls[0] > after:
                raise OSError(code, os.strerror(code))
        return real(fd, data, pos)

    monkeypatch.setattr(mapped_file.os, "pwrite", pwrite)


def small_settings(root: Path, **overrides: Any) -> StoreSettings:
    return StoreSettings(store_path_root_dir=root, **{**SMALL, **overrides})


def msg(
    topic: str = "T", queue_id: int = 0, body: bytes = b"x" * 100, **props: str
) -> MessageToStore:
    return MessageToStore(topic, queue_id, body, encode_properties(props))


@pytest.fixture
def make_store(tmp_path: Path) -> Callable[..., FileMessageStore]:
    def make(**overrides: Any) -> FileMessageStore:
        return FileMessageStore(small_settings(tmp_path / "store", **overrides))

    return make


@pytest.fixture
async def store(make_store: Callable[..., FileMessageStore]) -> AsyncIterator[FileMessageStore]:
    s = make_store()
    await s.start()
    yield s
    await s.stop()
