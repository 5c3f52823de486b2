"""What store calls return: small result objects with a status enum, never exceptions.

Mirrors RocketMQ's `PutMessageStatus`, `AppendMessageStatus` and `GetMessageStatus`; the broker maps
each status to a response code in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum, auto


class PutStatus(Enum):
    """The outcome of storing a message."""

    OK = auto()
    FLUSH_DISK_TIMEOUT = auto()
    """Stored, but the sync flush did not finish within `sync_flush_timeout_ms`."""
    FLUSH_SLAVE_TIMEOUT = auto()
    """SYNC_MASTER: stored on the master, but no slave acknowledged it within
    `sync_flush_timeout_ms`."""
    SLAVE_NOT_AVAILABLE = auto()
    """SYNC_MASTER: stored on the master, but no slave is connected, or the nearest is further
    behind than `ha_slave_fallbehind_max_bytes`, so none was waited for."""
    SERVICE_NOT_AVAILABLE = auto()
    """The store is not running, or it is a slave's (it takes messages only by replication)."""
    DISK_FULL = auto()
    """Disk use is past `disk_max_used_space_ratio` even after cleaning expired files."""
    CREATE_MAPPED_FILE_FAILED = auto()
    MESSAGE_ILLEGAL = auto()
    """Larger than `max_message_size`, or a bad topic name."""
    PROPERTIES_SIZE_EXCEEDED = auto()
    UNKNOWN_ERROR = auto()


class AppendStatus(Enum):
    """The outcome of writing one record into a CommitLog segment."""

    PUT_OK = auto()
    END_OF_FILE = auto()
    """The record did not fit: the segment's tail was blanked and the caller rolls to a new one."""


class GetStatus(Enum):
    """The outcome of reading a ConsumeQueue (RocketMQ `GetMessageStatus`)."""

    FOUND = auto()
    NO_MATCHED_MESSAGE = auto()
    MESSAGE_WAS_REMOVING = auto()
    OFFSET_FOUND_NULL = auto()
    OFFSET_OVERFLOW_BADLY = auto()
    OFFSET_OVERFLOW_ONE = auto()
    OFFSET_TOO_SMALL = auto()
    NO_MATCHED_LOGIC_QUEUE = auto()
    NO_MESSAGE_IN_QUEUE = auto()


@dataclass(slots=True)
class PutResult:
    """Where a message went, or why it did not."""

    status: PutStatus
    physical_offset: int = -1
    queue_offset: int = -1
    size: int = 0
    store_timestamp: int = 0
    msg_id: str = ""
    """The offset message id (store host + physical offset)."""
    message_count: int = 1
    """More than one for a batch; offsets and ids are then those of the first message."""
    msg_ids: list[str] = field(default_factory=list)
    remark: str = ""

    @property
    def ok(self) -> bool:
        return self.status is PutStatus.OK

    @property
    def stored(self) -> bool:
        """The message is in the CommitLog, even if a flush or a slave did not confirm it."""
        return self.status in STORED


STORED = frozenset(
    {
        PutStatus.OK,
        PutStatus.FLUSH_DISK_TIMEOUT,
        PutStatus.FLUSH_SLAVE_TIMEOUT,
        PutStatus.SLAVE_NOT_AVAILABLE,
    }
)
"""Statuses of a message that was written (offsets and ids are filled in)."""


@dataclass(slots=True)
class GetResult:
    """Records read from one queue, plus the offsets a pull response reports."""

    status: GetStatus
    next_begin_offset: int
    min_offset: int
    max_offset: int
    records: list[memoryview] = field(default_factory=list)
    queue_offsets: list[int] = field(default_factory=list)

    @property
    def message_count(self) -> int:
        return len(self.records)

    @property
    def total_size(self) -> int:
        return sum(len(r) for r in self.records)

    def body(self) -> bytes:
        """The records joined: exactly the body of a PULL_MESSAGE response."""
        return b"".join(self.records)


@dataclass(slots=True)
class QueryResult:
    """Records whose index key matched, newest first."""

    records: list[memoryview] = field(default_factory=list)
    physical_offsets: list[int] = field(default_factory=list)
    index_last_update_timestamp: int = 0
    index_last_update_phy_offset: int = 0
