"""MemoryMessageStore: the `MessageStore` contract kept in lists, for fast tests.

It stores the same record bytes as the file store (so pull bodies are identical), assigns the same
offsets and answers with the same statuses; it has no files, no flush and no recovery.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable

from rmqkit.common.hashing import tags_code
from rmqkit.common.names import SCHEDULE_TOPIC
from rmqkit.common.properties import Prop, find_property, split_keys
from rmqkit.protocol.codes import TRANSACTION_TYPE_MASK, SysFlag
from rmqkit.protocol.message_id import encode_offset_msg_id
from rmqkit.protocol.record import Host, as_host, body_crc, encode_record
from rmqkit.server.store.commit_log import takes_queue_offset
from rmqkit.server.store.delay import (
    DEFAULT_DELAY_LEVELS,
    deliver_at,
    parse_delay_levels,
    route_delayed,
)
from rmqkit.server.store.dispatch import Dispatcher, DispatchRequest
from rmqkit.server.store.filter import MessageFilter
from rmqkit.server.store.message import BatchToStore, MessageToStore
from rmqkit.server.store.results import GetResult, GetStatus, PutResult, PutStatus, QueryResult
from rmqkit.server.store.store_api import check_message, classify_offset

Entry = tuple[int, int, int]
"""(physical offset, size, tags code): a ConsumeQueue entry."""


class MemoryMessageStore:
    """Everything in memory; same offsets, ids and statuses as `FileMessageStore`."""

    def __init__(
        self,
        store_host: Host | tuple[str, int] = ("127.0.0.1", 10911),
        *,
        max_message_size_bytes: int = 4 * 1024 * 1024,
        max_transfer_count: int = 32,
        max_transfer_bytes: int = 256 * 1024,
        clock_ms: Callable[[], int] | None = None,
    ) -> None:
        self.store_host: Host = as_host(store_host)
        self.max_message_size = max_message_size_bytes
        self.max_transfer_count = max_transfer_count
        self.max_transfer_bytes = max_transfer_bytes
        self.clock_ms = clock_ms or (lambda: int(time.time() * 1000))
        self._records: list[bytes] = []
        self._starts: list[int] = []
        self._end = 0
        self._cqs: dict[tuple[str, int], list[Entry]] = {}
        self._index: dict[tuple[str, str], list[int]] = {}
        self._times: dict[int, int] = {}
        self._listeners: list[Dispatcher] = []
        self._valid_topics: set[str] = set()
        self.running = False
        self.delay_levels_ms = parse_delay_levels(DEFAULT_DELAY_LEVELS)

    async def start(self) -> None:
        self.running = True

    async def stop(self) -> None:
        self.running = False
        self.delay_levels_ms = parse_delay_levels(DEFAULT_DELAY_LEVELS)

    def add_dispatch_listener(self, listener: Dispatcher) -> None:
        self._listeners.append(listener)

    async def put_message(self, msg: MessageToStore) -> PutResult:
        routed = route_delayed(msg, self.delay_levels_ms)
        if isinstance(routed, PutResult):
            return routed
        return self._put([routed])

    async def put_each(self, msgs: list[MessageToStore]) -> list[PutResult]:
        return [await self.put_message(m) for m in msgs]

    async def put_batch(self, batch: BatchToStore) -> PutResult:
        return await self.put_messages(batch.messages())

    async def put_messages(self, msgs: list[MessageToStore]) -> PutResult:
        if any(route_delayed(m, self.delay_levels_ms) is not m for m in msgs):
            return PutResult(
                PutStatus.MESSAGE_ILLEGAL, remark="a batch cannot hold delayed messages"
            )
        return self._put(msgs)

    def _put(self, msgs: list[MessageToStore]) -> PutResult:
        if not msgs:
            return PutResult(PutStatus.MESSAGE_ILLEGAL, remark="an empty batch")
        if not self.running:
            return PutResult(
                PutStatus.SERVICE_NOT_AVAILABLE, remark="the message store is not running"
            )
        total = 0
        for m in msgs:
            bad = check_message(m, self.max_message_size, self._valid_topics)
            if bad is not None:
                return bad
            total += len(m.body)
        if total > self.max_message_size:
            return PutResult(PutStatus.MESSAGE_ILLEGAL, remark=f"the batch is {total} bytes")
        now = self.clock_ms()
        ids: list[str] = []
        first: tuple[int, int] | None = None
        size_sum = 0
        for m in msgs:
            key = (m.topic, m.queue_id)
            cq = self._cqs.setdefault(key, [])
            qoff = len(cq) if takes_queue_offset(m.sys_flag) else 0
            phys = self._end
            rec = encode_record(
                topic=m.topic, body=m.body, properties=m.properties, queue_id=m.queue_id,
                flag=m.flag, queue_offset=qoff, physical_offset=phys, sys_flag=m.sys_flag,
                born_timestamp=m.born_timestamp, born_host=m.born_host, store_timestamp=now,
                store_host=self.store_host, reconsume_times=m.reconsume_times,
                prepared_transaction_offset=m.prepared_transaction_offset,
                crc=m.body_crc if m.body_crc >= 0 else body_crc(m.body),
            )  # fmt: skip
            self._records.append(rec)
            self._starts.append(phys)
            self._times[phys] = now
            self._end += len(rec)
            size_sum += len(rec)
            ids.append(encode_offset_msg_id(self.store_host, phys))
            if first is None:
                first = (phys, qoff)
            self._dispatch(m, rec, phys, qoff, now)
        assert first is not None
        return PutResult(PutStatus.OK, first[0], first[1], size_sum, now, ids[0], len(msgs), ids)

    def _dispatch(self, m: MessageToStore, rec: bytes, phys: int, qoff: int, now: int) -> None:
        tags = find_property(m.properties, Prop.TAGS)
        keys = find_property(m.properties, Prop.KEYS) or ""
        uniq = find_property(m.properties, Prop.UNIQ_CLIENT_MESSAGE_ID_KEYIDX) or ""
        code = tags_code(tags)
        ttype = m.sys_flag & TRANSACTION_TYPE_MASK
        if takes_queue_offset(m.sys_flag):
            if m.topic == SCHEDULE_TOPIC:
                code = deliver_at(now, m.queue_id, self.delay_levels_ms)
            self._cqs[(m.topic, m.queue_id)].append((phys, len(rec), code))
        if ttype != SysFlag.TRANSACTION_ROLLBACK:
            for k in ([uniq] if uniq else []) + split_keys(keys):
                self._index.setdefault((m.topic, k), []).append(phys)
        req = DispatchRequest(
            m.topic, m.queue_id, phys, len(rec), code, now, qoff, keys, uniq, m.sys_flag,
            m.prepared_transaction_offset, m.properties,
        )  # fmt: skip
        for listener in self._listeners:
            listener([req])

    def _record_at(self, phys: int) -> bytes | None:
        i = bisect.bisect_left(self._starts, phys)
        if i < len(self._starts) and self._starts[i] == phys:
            return self._records[i]
        return None

    def get_message(
        self,
        topic: str,
        queue_id: int,
        offset: int,
        max_msgs: int,
        message_filter: MessageFilter | None = None,
    ) -> GetResult:
        cq = self._cqs.get((topic, queue_id))
        if cq is None:
            return GetResult(GetStatus.NO_MATCHED_LOGIC_QUEUE, 0, 0, 0)
        lo, hi = 0, len(cq)
        early = classify_offset(offset, lo, hi)
        if early is not None:
            return early
        max_msgs = max(1, min(max_msgs, self.max_transfer_count))
        result = GetResult(GetStatus.NO_MATCHED_MESSAGE, offset, lo, hi)
        total = 0
        nxt = offset
        while nxt < hi and len(result.records) < max_msgs:
            phys, size, code = cq[nxt]
            if message_filter is not None and not message_filter.matches_tags_code(code):
                nxt += 1
                continue
            rec = memoryview(self._record_at(phys) or b"")
            if message_filter is not None and not message_filter.matches_record(rec):
                nxt += 1
                continue
            if result.records and total + size > self.max_transfer_bytes:
                break
            result.records.append(rec)
            result.queue_offsets.append(nxt)
            total += size
            nxt += 1
        result.next_begin_offset = nxt
        if result.records:
            result.status = GetStatus.FOUND
        return result

    def get_max_offset(self, topic: str, queue_id: int) -> int:
        return len(self._cqs.get((topic, queue_id), ()))

    def get_min_offset(self, topic: str, queue_id: int) -> int:
        return 0

    def get_store_time(self, topic: str, queue_id: int, offset: int) -> int:
        cq = self._cqs.get((topic, queue_id), [])
        return self._times[cq[offset][0]] if 0 <= offset < len(cq) else -1

    def get_earliest_store_time(self, topic: str, queue_id: int) -> int:
        return self.get_store_time(topic, queue_id, 0)

    def get_offset_by_time(self, topic: str, queue_id: int, timestamp_ms: int) -> int:
        cq = self._cqs.get((topic, queue_id), [])
        return bisect.bisect_left(cq, timestamp_ms, key=lambda e: self._times[e[0]])

    def look_message_by_offset(self, physical_offset: int) -> memoryview | None:
        rec = self._record_at(physical_offset)
        return memoryview(rec) if rec is not None else None

    async def query_message(
        self, topic: str, key: str, max_num: int, begin_ms: int, end_ms: int
    ) -> QueryResult:
        out = QueryResult()
        for phys in reversed(self._index.get((topic, key), [])):
            if begin_ms <= self._times[phys] <= end_ms:
                rec = self._record_at(phys)
                assert rec is not None
                out.records.append(memoryview(rec))
                out.physical_offsets.append(phys)
                if len(out.records) >= max_num:
                    break
        return out

    @property
    def max_physical_offset(self) -> int:
        return self._end

    @property
    def min_physical_offset(self) -> int:
        return 0
