"""The broker's small JSON files: replaced whole, and durable once written."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from rmqkit.server.broker import json_file
from rmqkit.server.broker.json_file import load_json, save_json


def test_a_save_syncs_the_file_then_its_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Power loss cannot be caused here; what is synced, and in which order, can be seen."""
    synced: list[str] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        mode = os.fstat(fd).st_mode
        synced.append("folder" if stat.S_ISDIR(mode) else "file")
        real_fsync(fd)

    monkeypatch.setattr(json_file.os, "fsync", spy)
    path = tmp_path / "config" / "topics.json"
    save_json(path, {"a": 1})
    save_json(path, {"a": 2})
    assert synced == ["file", "folder", "file", "folder"]
    assert load_json(path) == {"a": 2}
    assert sorted(p.name for p in path.parent.iterdir()) == ["topics.json"]  # no .tmp left


def test_a_file_that_is_not_json_is_kept_aside(tmp_path: Path) -> None:
    path = tmp_path / "consumerOffset.json"
    path.write_bytes(b'{"offsetTable": ')
    assert load_json(path) is None
    assert not path.exists()
    assert (tmp_path / "consumerOffset.json.corrupt").read_bytes() == b'{"offsetTable": '
