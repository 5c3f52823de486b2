"""Small JSON files the broker keeps (topics, subscription groups, consumer offsets).

Written to a temporary file, fsynced, then renamed over the old one, so a crash leaves either the
old or the new file, never half of one. Mirrors RocketMQ's `ConfigManager` files in `config/`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger("rmqkit.broker.config")


def load_json(path: Path) -> dict[str, Any] | None:
    """The file's object, or None when it is missing; a corrupt file is reported and skipped."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        bad = path.with_suffix(path.suffix + ".corrupt")
        log.error("%s is not valid JSON (%s); kept as %s, starting without it", path, exc, bad)
        path.replace(bad)
        return None
    return obj if isinstance(obj, dict) else None


def save_json(path: Path, obj: dict[str, Any]) -> None:
    """Replace `path` atomically with `obj` as pretty JSON, durably: the new file's bytes are
    synced before the rename, and the folder after it, so a power loss leaves the new file or
    the old one, and once this returns, the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "wb") as f:
        f.write(orjson.dumps(obj, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)
    folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
