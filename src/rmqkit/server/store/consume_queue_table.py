"""Every ConsumeQueue of a store, by topic and queue id (RocketMQ `consumeQueueTable`).

A queue's folder is `consumequeue/<topic>/<queueId>/`. Queues are loaded from those folders at
start and created on the first record the reput dispatcher hands over for a new topic or queue.
The table remembers which queues were written since the last logics flush, so that flush syncs
only their files.
"""

from __future__ import annotations

from pathlib import Path

from rmqkit.common.names import SCHEDULE_TOPIC
from rmqkit.server.store.consume_queue import ConsumeQueue
from rmqkit.server.store.delay import deliver_at
from rmqkit.server.store.dispatch import DispatchRequest
from rmqkit.server.store.mapped_file import MappedFile

_NOT_CONSUMABLE = (0x4, 0xC)
"""The transaction bits of sysflag (0xC) of half and rollback records: no ConsumeQueue entry."""


class ConsumeQueueTable:
    def __init__(self, root: Path, file_entries: int, delay_levels_ms: list[int]) -> None:
        self.root = root
        self.file_entries = file_entries
        self.delay_levels_ms = delay_levels_ms
        self.by_topic: dict[str, dict[int, ConsumeQueue]] = {}
        self._dirty: set[ConsumeQueue] = set()

    def load(self) -> None:
        """Open every queue folder below the root (created when missing)."""
        self.root.mkdir(parents=True, exist_ok=True)
        for tdir in sorted(self.root.iterdir()):
            if not tdir.is_dir():
                continue
            for qdir in sorted(tdir.iterdir()):
                if qdir.is_dir() and qdir.name.isdigit():
                    self.create(tdir.name, int(qdir.name), qdir).load()

    def create(self, topic: str, queue_id: int, qdir: Path | None = None) -> ConsumeQueue:
        qdir = qdir or self.root / topic / str(queue_id)
        cq = ConsumeQueue(topic, queue_id, qdir, self.file_entries)
        self.by_topic.setdefault(topic, {})[queue_id] = cq
        return cq

    def all(self) -> list[ConsumeQueue]:
        return [cq for qs in self.by_topic.values() for cq in qs.values()]

    def find(self, topic: str, queue_id: int) -> ConsumeQueue | None:
        qs = self.by_topic.get(topic)
        return qs.get(queue_id) if qs else None

    def dispatch(self, run: list[DispatchRequest]) -> None:
        """The reput dispatcher's first step: an entry for each consumable record of `run`.

        A batch send's records come in a row for one queue: the queue is looked up again only
        when the topic or queue id changes.
        """
        queues = self.by_topic
        dirty = self._dirty
        cq: ConsumeQueue | None = None
        topic: str | None = None
        queue_id = -1
        for req in run:
            if (req.sys_flag & 0xC) in _NOT_CONSUMABLE:
                continue
            if req.queue_id != queue_id or req.topic != topic:
                topic, queue_id = req.topic, req.queue_id
                qs = queues.get(topic)
                cq = qs.get(queue_id) if qs else None
                if cq is None:
                    cq = self.create(topic, queue_id)
                dirty.add(cq)
            assert cq is not None
            code = req.tags_code
            if topic == SCHEDULE_TOPIC:  # the tag code of a delayed message is when it is due
                code = deliver_at(req.store_timestamp, queue_id, self.delay_levels_ms)
            cq.put(req.consume_queue_offset, req.commit_log_offset, req.msg_size, code)

    def take_dirty(self) -> list[tuple[MappedFile, int]]:
        """The files written since the last call, each with how far it is written."""
        dirty, self._dirty = self._dirty, set()
        return [t for cq in dirty for t in cq.files.dirty_targets()]

    def files(self) -> list[MappedFile]:
        return [mf for cq in self.all() for mf in cq.files.files]

    def close(self) -> None:
        for cq in self.all():
            cq.close()
