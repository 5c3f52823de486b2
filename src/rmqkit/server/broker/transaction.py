"""Transactional messages (RocketMQ `TransactionalMessageService` and its check service).

A producer sends a *half* message: it is stored in RMQ_SYS_TRANS_HALF_TOPIC (its real topic and
queue in REAL_TOPIC / REAL_QID), where no consumer sees it. END_TRANSACTION then commits it (the
message is stored in its real topic and becomes visible) or rolls it back; either way an *op*
message recording the half message's queue offset goes to RMQ_SYS_TRANS_OP_HALF_TOPIC, so a restart
neither loses nor repeats a decision. Half messages still unresolved after `transactionTimeOut`
are checked: the broker sends CHECK_TRANSACTION_STATE to a live producer of the group and re-queues
a copy with one more check counted, every `transactionCheckInterval`, at most
`transactionCheckMax` times; then the message is discarded and logged.

Progress through both system queues is kept as the consumer offsets of the system group
CID_RMQ_SYS_TRANS, as RocketMQ does.
"""

from __future__ import annotations

import logging
import random
import time
from typing import TYPE_CHECKING

from rmqkit.common.names import TRANS_HALF_TOPIC, TRANS_OP_HALF_TOPIC
from rmqkit.common.properties import (
    NAME_VALUE_SEPARATOR,
    PROPERTY_SEPARATOR,
    Prop,
    encode_properties,
)
from rmqkit.errors import CorruptRecordError
from rmqkit.protocol.codes import TRANSACTION_TYPE_MASK, RequestCode, SysFlag
from rmqkit.protocol.command import RemotingCommand
from rmqkit.protocol.record import StoredMessage, decode_record
from rmqkit.server.service import Service
from rmqkit.server.store import MessageToStore, PutResult, PutStatus

if TYPE_CHECKING:
    from rmqkit.server.broker.broker import Broker

log = logging.getLogger("rmqkit.broker.transaction")

SYSTEM_GROUP = "CID_RMQ_SYS_TRANS"
OP_TAG = "d"
COMMIT = 8
ROLLBACK = 12
UNKNOWN = 0
MAX_KEYS = 200_000


def to_half(msg: MessageToStore) -> MessageToStore:
    """The half message stored for a prepared send: hidden in the half topic, queue 0."""
    props = msg.properties
    if props and not props.endswith(PROPERTY_SEPARATOR):
        props += PROPERTY_SEPARATOR
    props += (
        f"{Prop.REAL_TOPIC}{NAME_VALUE_SEPARATOR}{msg.topic}{PROPERTY_SEPARATOR}"
        f"{Prop.REAL_QUEUE_ID}{NAME_VALUE_SEPARATOR}{msg.queue_id}{PROPERTY_SEPARATOR}"
    )
    sys_flag = msg.sys_flag & ~TRANSACTION_TYPE_MASK  # dispatched like a normal message
    return MessageToStore(
        TRANS_HALF_TOPIC, 0, msg.body, props, msg.flag, sys_flag, msg.born_timestamp,
        msg.born_host, msg.reconsume_times, 0, msg.body_crc, msg.wait_store_ok,
    )  # fmt: skip


class TransactionService(Service):
    """Ends transactions and checks unresolved ones."""

    name = "transaction-check"

    def __init__(self, broker: Broker) -> None:
        super().__init__(broker.settings.transaction_check_interval_ms / 1000)
        self.broker = broker
        self.resolved: set[int] = set()
        """Half queue offsets with a decision, at or past `half_offset`."""
        self._ending: set[str | int] = set()
        """The messages (UNIQ_KEY, else half queue offset) whose decision is being stored."""
        self.resolved_keys: dict[str, None] = {}
        """UNIQ_KEYs decided lately (an ordered set, trimmed to MAX_KEYS): a late repeat of a
        decision on a re-queued copy is recognised and ignored."""
        self.checks_sent = 0
        self.discarded = 0
        self._op_read: int | None = None
        """How far the op queue has been read (from the committed op offset after a start)."""
        self._op_refs: list[tuple[int, int]] = []
        """(op queue offset, half offset) of ops read that name a half message at or past
        `half_offset`: the op offset is committed only up to the first of them, so a restart
        reads them again and knows those decisions."""

    # -- progress ---------------------------------------------------------------------------------

    @property
    def half_offset(self) -> int:
        return max(self.broker.offsets.query(SYSTEM_GROUP, TRANS_HALF_TOPIC, 0), 0)

    @property
    def op_offset(self) -> int:
        return max(self.broker.offsets.query(SYSTEM_GROUP, TRANS_OP_HALF_TOPIC, 0), 0)

    def _read(self, topic: str, offset: int) -> StoredMessage | None:
        store = self.broker.store
        cq = store.find_consume_queue(topic, 0)
        entry = cq.entry(offset) if cq else None
        rec = store.commit_log.read(entry[0], entry[1]) if entry else None
        if rec is None:
            return None
        try:
            return decode_record(rec, inflate=False)
        except CorruptRecordError as exc:
            log.error("%s offset %d is corrupt: %s", topic, offset, exc)
            return None

    def _catch_up_ops(self) -> None:
        """Read op messages written since the last call (after a start: from the first op that
        may still matter, see `_op_refs`)."""
        store = self.broker.store
        end = store.get_max_offset(TRANS_OP_HALF_TOPIC, 0)
        off = self.op_offset if self._op_read is None else self._op_read
        half = self.half_offset
        while off < end:
            op = self._read(TRANS_OP_HALF_TOPIC, off)
            if op is not None:
                try:
                    done = int(op.body)
                except ValueError:
                    done = -1
                if done >= half:
                    self.resolved.add(done)
                    self._op_refs.append((off, done))
                for k in op.keys:
                    self._remember(k)
            off += 1
        self._op_read = off

    def _commit_progress(self, half_offset: int) -> None:
        """Commit the half queue offset, and the op offset up to the first op still needed."""
        self._op_refs = [(o, h) for o, h in self._op_refs if h >= half_offset]
        offsets = self.broker.offsets
        offsets.commit(SYSTEM_GROUP, TRANS_HALF_TOPIC, 0, half_offset)
        op_end = self._op_read if self._op_read is not None else self.op_offset
        offsets.commit(SYSTEM_GROUP, TRANS_OP_HALF_TOPIC, 0,
                       self._op_refs[0][0] if self._op_refs else op_end)  # fmt: skip

    # -- ending -----------------------------------------------------------------------------------

    async def end(self, half: StoredMessage, decision: int) -> PutResult | None:
        """Commit or roll back `half`; None when it was already decided, or is being decided
        (a repeat is harmless: the producer's answer and a check's, or two checks' copies)."""
        self._catch_up_ops()
        uniq = half.uniq_key or ""
        if half.queue_offset in self.resolved or (uniq and uniq in self.resolved_keys):
            return None
        # From here to the recorded decision are awaits (the index, the store): one at a time
        # for a message, or both of two answers would be stored.
        ending: str | int = uniq or half.queue_offset
        if ending in self._ending:
            return None
        self._ending.add(ending)
        try:
            return await self._end(half, decision)
        finally:
            self._ending.discard(ending)

    async def _end(self, half: StoredMessage, decision: int) -> PutResult | None:
        result = PutResult(PutStatus.OK)
        if decision == COMMIT and await self._committed_before(half):
            # Committed, but the broker stopped before it recorded the decision: record it now.
            await self._record_decision(half)
            return None
        if decision == COMMIT:
            props = dict(half.properties)
            topic = props.pop(Prop.REAL_TOPIC, None)
            qid = props.pop(Prop.REAL_QUEUE_ID, "0")
            props.pop(Prop.TRANSACTION_PREPARED, None)
            if topic is None:
                return PutResult(
                    PutStatus.MESSAGE_ILLEGAL, remark="the half message has no REAL_TOPIC"
                )
            msg = MessageToStore(
                topic, int(qid), half.body, encode_properties(props), half.flag,
                (half.sys_flag & ~TRANSACTION_TYPE_MASK) | SysFlag.TRANSACTION_COMMIT,
                half.born_timestamp, half.born_host, half.reconsume_times,
                half.commit_log_offset, half.body_crc, True,
            )  # fmt: skip
            result = await self.broker.store.put_message(msg)
            if not result.stored:
                return result
        await self._record_decision(half)
        return result

    async def _committed_before(self, half: StoredMessage) -> bool:
        """Whether a checked copy's message is already in its real topic (found by UNIQ_KEY).

        Only copies made for a check can meet this: the original is ended once by its producer.
        """
        topic = half.properties.get(Prop.REAL_TOPIC)
        uniq = half.uniq_key
        if not topic or not uniq or Prop.TRANSACTION_CHECK_TIMES not in half.properties:
            return False
        found = await self.broker.store.query_message(
            topic, uniq, 8, 0, int(time.time() * 1000) + 1
        )
        for rec in found.records:
            try:
                m = decode_record(rec, inflate=False)
            except CorruptRecordError:
                continue
            ttype = m.sys_flag & TRANSACTION_TYPE_MASK
            if m.uniq_key == uniq and ttype == SysFlag.TRANSACTION_COMMIT:
                return True
        return False

    async def _record_decision(self, half: StoredMessage) -> None:
        props = {Prop.TAGS: OP_TAG}
        if half.uniq_key:
            props[Prop.KEYS] = half.uniq_key
            self._remember(half.uniq_key)
        self.resolved.add(half.queue_offset)
        op = MessageToStore(TRANS_OP_HALF_TOPIC, 0, str(half.queue_offset).encode(),
                            encode_properties(props))  # fmt: skip
        r = await self.broker.store.put_message(op)
        if not r.stored:
            log.error("could not record the decision on half message %d: %s", half.queue_offset,
                      r.remark or r.status.name)  # fmt: skip
        elif r.queue_offset == self._op_read:
            # The next op to read is this one, which says what was just noted: read past it
            # rather than decode it again (`_catch_up_ops` would do the same with it).
            self._op_read += 1
            if half.queue_offset >= self.half_offset:
                self._op_refs.append((r.queue_offset, half.queue_offset))

    def _remember(self, key: str) -> None:
        self.resolved_keys[key] = None
        if len(self.resolved_keys) > MAX_KEYS:
            for old in list(self.resolved_keys)[: MAX_KEYS // 2]:
                del self.resolved_keys[old]

    # -- checking ---------------------------------------------------------------------------------

    async def _run_once(self) -> None:
        """One check pass over the half queue."""
        b = self.broker
        if not b.running:
            return
        self._catch_up_ops()
        store = b.store
        end = store.get_max_offset(TRANS_HALF_TOPIC, 0)
        i = self.half_offset
        now = int(time.time() * 1000)
        s = b.settings
        while i < end:
            if i in self.resolved:
                self.resolved.discard(i)
                i += 1
                continue
            half = self._read(TRANS_HALF_TOPIC, i)
            if half is None:
                i += 1
                continue
            if half.uniq_key and half.uniq_key in self.resolved_keys:
                # A copy re-queued for a check of a message decided since: mark it decided
                # too, so a restart that no longer knows the key does not check it again.
                await self._record_decision(half)
                i += 1
                continue
            immunity_s = half.properties.get(Prop.CHECK_IMMUNITY_TIME_IN_SECONDS)
            wait_ms = (
                int(immunity_s) * 1000
                if immunity_s and immunity_s.isdigit()
                else (s.transaction_timeout_ms)
            )
            if now - half.born_timestamp < wait_ms:
                break  # everything after it was sent later
            checks = int(half.properties.get(Prop.TRANSACTION_CHECK_TIMES, "0") or 0)
            if checks >= s.transaction_check_max:
                log.warning(
                    "half message %s of %s checked %d times without an answer: discarded",
                    half.uniq_key or half.offset_msg_id, half.properties.get(Prop.PRODUCER_GROUP),
                    checks,
                )  # fmt: skip
                self.discarded += 1
                await self._record_decision(half)
                i += 1
                continue
            await self._check(half, checks)
            i += 1
        self._catch_up_ops()
        self._commit_progress(i)

    async def _check(self, half: StoredMessage, checks: int) -> None:
        """Re-queue a copy with one more check counted, and ask a producer about it."""
        props = dict(half.properties)
        props[Prop.TRANSACTION_CHECK_TIMES] = str(checks + 1)
        copy = MessageToStore(
            TRANS_HALF_TOPIC, 0, half.body, encode_properties(props), half.flag, half.sys_flag,
            half.born_timestamp, half.born_host, half.reconsume_times, 0, half.body_crc, False,
        )  # fmt: skip
        r = await self.broker.store.put_message(copy)
        if not r.stored:
            log.error("could not re-queue half message for checking: %s", r.remark)
            return
        group = props.get(Prop.PRODUCER_GROUP, "")
        channels = [c for c in self.broker.clients.producer_channels(group) if c.conn.is_open]
        if not channels:
            log.info("no producer of %s online to check half message %s", group, half.uniq_key)
            return
        rec = self.broker.store.look_message_by_offset(r.physical_offset)
        cmd = RemotingCommand(
            RequestCode.CHECK_TRANSACTION_STATE,
            ext_fields={
                "topic": props.get(Prop.REAL_TOPIC, ""),
                "tranStateTableOffset": str(r.queue_offset),
                "commitLogOffset": str(r.physical_offset),
                "msgId": half.uniq_key or r.msg_id,
                "transactionId": props.get(Prop.TRANSACTION_ID, half.uniq_key or ""),
                "offsetMsgId": r.msg_id,
            },
            body=bytes(rec) if rec is not None else b"",
        )
        random.choice(channels).conn.oneway(cmd)
        self.checks_sent += 1
