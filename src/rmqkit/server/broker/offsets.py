"""Consumer offsets committed by clustering consumers (RocketMQ `ConsumerOffsetManager`).

Kept in memory, written to `config/consumerOffset.json` every `flushConsumerOffsetInterval` and
at stop: `{"offsetTable": {"<topic>@<group>": {"<queueId>": offset}}}`.
"""

from __future__ import annotations

import logging
from pathlib import Path

from rmqkit.protocol.route import BodyError
from rmqkit.protocol.sync_bodies import queue_offsets
from rmqkit.server.broker.json_file import load_json, save_json

log = logging.getLogger("rmqkit.broker.offsets")

SEP = "@"


class ConsumerOffsetTable:
    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.table: dict[str, dict[int, int]] = {}
        self.dirty = False

    def load(self) -> None:
        """Read the file; an entry Java would not read is left out, and the log names it."""
        data = load_json(self.path) if self.path else None
        table = (data or {}).get("offsetTable") or {}
        if not isinstance(table, dict):
            log.error("consumerOffset.json: offsetTable is not an object; starting without it")
            return
        for key, queues in table.items():
            try:
                self.table[key] = queue_offsets(key, queues)
            except BodyError as exc:
                log.error("consumerOffset.json: skipping %s: %s", key, exc)

    def persist(self) -> None:
        if self.path is not None:
            save_json(
                self.path,
                {
                    "offsetTable": {
                        k: {str(q): o for q, o in v.items()} for k, v in self.table.items()
                    }
                },
            )
        self.dirty = False

    def commit(self, group: str, topic: str, queue_id: int, offset: int) -> None:
        """Remember `offset`; negative offsets (ali-ons sends -1 for 0) are ignored."""
        if offset < 0:
            return
        self.table.setdefault(f"{topic}{SEP}{group}", {})[queue_id] = offset
        self.dirty = True

    def query(self, group: str, topic: str, queue_id: int) -> int:
        """The committed offset, or -1."""
        return self.table.get(f"{topic}{SEP}{group}", {}).get(queue_id, -1)

    def topics_of(self, group: str) -> list[str]:
        return [k.split(SEP, 1)[0] for k in self.table if k.split(SEP, 1)[1] == group]

    def groups_of(self, topic: str) -> list[str]:
        return [k.split(SEP, 1)[1] for k in self.table if k.split(SEP, 1)[0] == topic]

    def merge(self, table: dict[str, dict[int, int]]) -> bool:
        """Take a master's offsets key by key and persist them if that changed anything (slave
        sync); returns whether it did.

        As RocketMQ's `putAll`: each `topic@group` the master has replaces the slave's entry;
        entries only the slave has (committed here while the master was down) stay.
        """
        changed = False
        for key, queues in table.items():
            if self.table.get(key) != queues:
                self.table[key] = dict(queues)
                changed = True
        if changed:
            self.persist()
        return changed

    def delete_group(self, group: str) -> None:
        for key in [k for k in self.table if k.split(SEP, 1)[1] == group]:
            del self.table[key]
        self.dirty = True
