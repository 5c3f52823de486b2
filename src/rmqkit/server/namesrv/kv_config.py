"""KVConfig: the NameServer's namespace -> key -> value settings (RocketMQ's KVConfigManager).

Kept in memory and, when a path is given, written after every change as Java writes
`kvConfig.json` (`{"configTable": {namespace: {key: value}}}`), so either can read the other's file.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import orjson

from rmqkit.errors import ConfigurationError

log = logging.getLogger("rmqkit.namesrv.kv")


class KVConfig:
    """Namespaced string settings, such as ORDER_TOPIC_CONFIG."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._table: dict[str, dict[str, str]] = {}

    def load(self) -> None:
        """Read the file if there is one; a file that cannot be parsed stops the start-up."""
        if self.path is None or not self.path.exists():
            return
        try:
            data = orjson.loads(self.path.read_bytes())
            table = data.get("configTable") or {}
            loaded = {
                str(ns): {str(k): str(v) for k, v in entries.items()}
                for ns, entries in table.items()
            }
        except (OSError, orjson.JSONDecodeError, AttributeError, TypeError) as exc:
            raise ConfigurationError(f"cannot read KV config file {self.path}: {exc}") from exc
        self._table.update(loaded)
        log.info("loaded %d KV namespaces from %s", len(loaded), self.path)

    def put(self, namespace: str, key: str, value: str) -> None:
        self._table.setdefault(namespace, {})[key] = value
        self._persist()

    def get(self, namespace: str, key: str) -> str | None:
        return self._table.get(namespace, {}).get(key)

    def delete(self, namespace: str, key: str) -> None:
        entries = self._table.get(namespace)
        if entries is not None and entries.pop(key, None) is not None:
            self._persist()

    def namespace(self, namespace: str) -> dict[str, str] | None:
        """A copy of one namespace's entries, or None when the namespace was never written."""
        entries = self._table.get(namespace)
        return None if entries is None else dict(entries)

    def _persist(self) -> None:
        if self.path is None:
            return
        # Write a sibling file and rename it over the old one, so a crash never leaves half a file.
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            tmp.write_bytes(orjson.dumps({"configTable": self._table}, option=orjson.OPT_INDENT_2))
            os.replace(tmp, self.path)
        except OSError:
            log.exception("cannot write KV config file %s", self.path)
