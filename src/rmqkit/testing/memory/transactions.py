"""Half messages of an in-memory broker (RocketMQ `TransactionalMessageService`).

A half message is stored in RMQ_SYS_TRANS_HALF_TOPIC with its real topic and queue in
REAL_TOPIC / REAL_QID, where no consumer reads it. COMMIT stores it again in its real topic
(TRAN_MSG and REAL_* dropped, the commit type in its sysflag); ROLLBACK forgets it. One still
unresolved after the transaction timeout is checked with its producer group every check interval,
each check counted in TRANSACTION_CHECK_TIMES; after `check_max` checks it is discarded.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from rmqkit.client.transaction import TransactionState
from rmqkit.common.names import TRANS_HALF_TOPIC
from rmqkit.common.properties import Prop
from rmqkit.protocol.codes import TRANSACTION_TYPE_MASK, SysFlag
from rmqkit.protocol.record import StoredMessage
from rmqkit.testing.memory.store import Draft, MessageLog, copy_message

log = logging.getLogger("rmqkit.testing.memory")


@dataclass(slots=True)
class HalfMessage:
    """An unresolved transactional message."""

    stored: StoredMessage
    group: str
    checks: int = 0

    def for_check(self) -> StoredMessage:
        """The message a check-back hands the producer: the half message with its checks."""
        m = copy_message(self.stored)
        m.properties[Prop.TRANSACTION_CHECK_TIMES] = str(self.checks)
        return m


class TransactionTable:
    """The half messages of one broker, by message id (UNIQ_KEY)."""

    def __init__(self, store: MessageLog, *, timeout_ms: int, check_max: int) -> None:
        self.store = store
        self.timeout_ms = timeout_ms
        self.check_max = check_max
        self.half: dict[str, HalfMessage] = {}
        self.discarded: list[StoredMessage] = []
        """Half messages dropped after `check_max` unanswered checks (the broker logs them)."""

    def prepare(self, d: Draft, uniq: str) -> StoredMessage:
        """Store `d` as a half message, invisible to consumers."""
        props = dict(d.properties)
        props[Prop.REAL_TOPIC] = d.topic
        props[Prop.REAL_QUEUE_ID] = str(self.store.queue(d.topic, d.queue_id).queue_id)
        half = self.store.append(Draft(
            TRANS_HALF_TOPIC, 0, d.body, props, d.flag, d.sys_flag & ~TRANSACTION_TYPE_MASK,
            d.born_timestamp, d.born_host, d.reconsume_times,
        ))  # fmt: skip
        self.half[uniq] = HalfMessage(half, props.get(Prop.PRODUCER_GROUP, ""))
        return half

    def end(self, uniq: str, state: TransactionState) -> StoredMessage | None:
        """Apply a decision: COMMIT returns the message stored in its real topic (or parked,
        when it asks for a delay); ROLLBACK and UNKNOWN return None (UNKNOWN keeps it half)."""
        if state is TransactionState.UNKNOWN:
            return None
        h = self.half.pop(uniq, None)
        if h is None or state is TransactionState.ROLLBACK:
            return None
        half = h.stored
        props = dict(half.properties)
        topic = props.pop(Prop.REAL_TOPIC)
        qid = int(props.pop(Prop.REAL_QUEUE_ID, "0"))
        props.pop(Prop.TRANSACTION_PREPARED, None)
        if h.checks:
            props[Prop.TRANSACTION_CHECK_TIMES] = str(h.checks)
        return self.store.put(Draft(
            topic, qid, half.body, props, half.flag,
            (half.sys_flag & ~TRANSACTION_TYPE_MASK) | SysFlag.TRANSACTION_COMMIT,
            half.born_timestamp, half.born_host, half.reconsume_times, half.commit_log_offset,
        ))  # fmt: skip

    def to_check(self, now_ms: int, *, force: bool = False) -> list[tuple[str, HalfMessage]]:
        """The half messages a check round asks about, each counted once more; those past
        `check_max` are discarded first. `force` ignores the transaction timeout."""
        out = []
        for uniq, h in list(self.half.items()):
            immunity = h.stored.properties.get(Prop.CHECK_IMMUNITY_TIME_IN_SECONDS, "")
            wait_ms = int(immunity) * 1000 if immunity.isdigit() else self.timeout_ms
            if not force and now_ms - h.stored.born_timestamp < wait_ms:
                continue
            if h.checks >= self.check_max:
                log.warning("half message %s of %s checked %d times without an answer: "
                            "discarded", uniq, h.group, h.checks)  # fmt: skip
                del self.half[uniq]
                self.discarded.append(copy_message(h.stored))
                continue
            h.checks += 1
            out.append((uniq, h))
        return out
