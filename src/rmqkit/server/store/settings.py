"""Settings of the message store: paths, segment sizes, flush, retention and limits.

Each field is one of RocketMQ's `MessageStoreConfig` keys in Python spelling, with its unit in the
name; `broker_key` in the field's extra names the broker.properties key it is read from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.json_schema import JsonDict  # type: ignore[attr-defined]

from rmqkit.errors import ConfigurationError

BrokerRole = Literal["ASYNC_MASTER", "SYNC_MASTER", "SLAVE"]
"""RocketMQ's `BrokerRole`: how a store takes messages and whether sends wait for a slave."""
CQ_ENTRY_BYTES = 20
GiB = 1024 * 1024 * 1024
MiB = 1024 * 1024


def _key(name: str) -> JsonDict:
    return {"broker_key": name}


class StoreSettings(BaseModel):
    """Where and how the store keeps messages (RocketMQ `MessageStoreConfig`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    store_path_root_dir: Path = Field(
        Path("rmqkit-data/store"),
        description="Root of every store file.",
        json_schema_extra=_key("storePathRootDir"),
    )
    store_path_commit_log: Path | None = Field(
        None,
        description="CommitLog segments; default <root>/commitlog.",
        json_schema_extra=_key("storePathCommitLog"),
    )
    store_path_consume_queue: Path | None = Field(
        None,
        description="ConsumeQueue files; default <root>/consumequeue.",
        json_schema_extra=_key("storePathConsumeQueue"),
    )
    store_path_index: Path | None = Field(
        None,
        description="IndexFiles; default <root>/index.",
        json_schema_extra=_key("storePathIndex"),
    )
    store_checkpoint: Path | None = Field(
        None,
        description="The checkpoint file; default <root>/checkpoint.",
        json_schema_extra=_key("storeCheckpoint"),
    )
    abort_file: Path | None = Field(
        None,
        description="Present while the store runs; found at start means the last stop was a crash."
        " Default <root>/abort.",
        json_schema_extra=_key("abortFile"),
    )
    mapped_file_size_commit_log_bytes: int = Field(
        GiB,
        ge=64 * 1024,
        description="Size of one CommitLog segment file.",
        json_schema_extra=_key("mappedFileSizeCommitLog"),
    )
    mapped_file_size_consume_queue_bytes: int = Field(
        300_000 * CQ_ENTRY_BYTES,
        ge=CQ_ENTRY_BYTES,
        description="Size of one ConsumeQueue file, rounded up to whole 20-byte entries"
        " (RocketMQ's default holds 300,000 entries).",
        json_schema_extra=_key("mappedFileSizeConsumeQueue"),
    )
    max_message_size_bytes: int = Field(
        4 * MiB,
        ge=1024,
        description="Largest message body accepted (a batch counts as a whole).",
        json_schema_extra=_key("maxMessageSize"),
    )
    flush_disk_type: Literal["ASYNC_FLUSH", "SYNC_FLUSH"] = Field(
        "ASYNC_FLUSH",
        description="SYNC_FLUSH acknowledges a message only after fsync (group commit);"
        " ASYNC_FLUSH acknowledges once it is in the page cache.",
        json_schema_extra=_key("flushDiskType"),
    )
    flush_interval_commit_log_ms: int = Field(
        500,
        ge=1,
        description="ASYNC_FLUSH: how often the flusher looks.",
        json_schema_extra=_key("flushIntervalCommitLog"),
    )
    flush_commit_log_least_pages: int = Field(
        4,
        ge=0,
        description="ASYNC_FLUSH: flush once this many 4 KiB pages are dirty.",
        json_schema_extra=_key("flushCommitLogLeastPages"),
    )
    flush_commit_log_thorough_interval_ms: int = Field(
        10_000,
        ge=1,
        description="ASYNC_FLUSH: flush whatever is dirty at least this often.",
        json_schema_extra=_key("flushCommitLogThoroughInterval"),
    )
    warm_mapped_file_enable: bool = Field(
        True,
        description="Master: zero-fill (ASYNC_FLUSH) or read (SYNC_FLUSH) the CommitLog ahead of"
        " the writer in a worker thread, so appends do not take the page faults of new pages.",
        json_schema_extra=_key("warmMapedFileEnable"),
    )
    sync_flush_timeout_ms: int = Field(
        5_000,
        ge=1,
        description="SYNC_FLUSH: a send waits this long for its fsync, then is"
        " answered FLUSH_DISK_TIMEOUT (the message stays stored).",
        json_schema_extra=_key("syncFlushTimeout"),
    )
    flush_interval_consume_queue_ms: int = Field(
        1_000,
        ge=1,
        description="How often ConsumeQueue/IndexFile pages and the checkpoint are flushed.",
        json_schema_extra=_key("flushIntervalConsumeQueue"),
    )
    message_index_enable: bool = Field(
        True,
        description="Build IndexFiles for KEYS and UNIQ_KEY (query by key).",
        json_schema_extra=_key("messageIndexEnable"),
    )
    message_index_process: bool = Field(
        True,
        description="rmqkit: build the IndexFiles in a child process that reads the CommitLog,"
        " off the event loop (about a sixth of its work for a batch send); false builds them"
        " on it.",
        json_schema_extra=_key("messageIndexProcess"),
    )
    max_hash_slot_num: int = Field(
        5_000_000,
        ge=1,
        description="Hash slots per IndexFile.",
        json_schema_extra=_key("maxHashSlotNum"),
    )
    max_index_num: int = Field(
        20_000_000,
        ge=1,
        description="Index entries per IndexFile; a new file starts when full.",
        json_schema_extra=_key("maxIndexNum"),
    )
    delete_when: str = Field(
        "04",
        description="Hours of the day (00-23, ';'-separated) when expired files are deleted.",
        json_schema_extra=_key("deleteWhen"),
    )
    file_reserved_time_hours: float = Field(
        72,
        gt=0,
        description="A CommitLog segment expires this long after its last write.",
        json_schema_extra=_key("fileReservedTime"),
    )
    disk_max_used_space_ratio: int = Field(
        75,
        ge=10,
        le=95,
        description="Percent of the disk in use past which expired files are"
        " deleted at once, whatever the hour, and writes are refused (DISK_FULL) while it stays"
        " past it.",
        json_schema_extra=_key("diskMaxUsedSpaceRatio"),
    )
    clean_file_forcibly_enable: bool = Field(
        True,
        description="Past disk_space_clean_forcibly_ratio, delete the oldest segments even"
        " before they expire.",
        json_schema_extra=_key("cleanFileForciblyEnable"),
    )
    disk_space_clean_forcibly_ratio: int = Field(
        85,
        ge=10,
        le=99,
        description="Percent of the disk in use past which segments are deleted"
        " even when not expired (if clean_file_forcibly_enable).",
        json_schema_extra=_key("diskSpaceCleanForciblyRatio"),
    )
    clean_resource_interval_ms: int = Field(
        10_000,
        ge=10,
        description="How often retention looks at the disk.",
        json_schema_extra=_key("cleanResourceInterval"),
    )
    max_transfer_count_on_message_in_memory: int = Field(
        32,
        ge=1,
        description="Most messages one pull returns.",
        json_schema_extra=_key("maxTransferCountOnMessageInMemory"),
    )
    max_transfer_bytes_on_message_in_memory: int = Field(
        256 * 1024,
        ge=1024,
        description="Most bytes one pull returns (at least one message).",
        json_schema_extra=_key("maxTransferBytesOnMessageInMemory"),
    )
    access_message_in_memory_max_ratio: int = Field(
        40,
        ge=0,
        le=100,
        description="Percent of physical memory a pull may read from before its messages count as"
        " cold (RocketMQ then suggests the slave, with slaveReadEnable).",
        json_schema_extra=_key("accessMessageInMemoryMaxRatio"),
    )
    ha_listen_port: int | None = Field(
        None,
        ge=0,
        le=65535,
        description="Port a master listens on for its slaves' replication connections; default"
        " listenPort + 1 (10912), or a free port when listenPort is 0.",
        json_schema_extra=_key("haListenPort"),
    )
    ha_master_address: str | None = Field(
        None,
        description="Slave: the master's replication address (`host:port`). Default: the"
        " haServerAddr the NameServer returns at every registration.",
        json_schema_extra=_key("haMasterAddress"),
    )
    ha_send_heartbeat_interval_ms: int = Field(
        5_000,
        ge=1,
        description="A slave reports its offset, and a master sends an empty transfer, at least"
        " this often.",
        json_schema_extra=_key("haSendHeartbeatInterval"),
    )
    ha_housekeeping_interval_ms: int = Field(
        20_000,
        ge=1,
        description="A replication connection silent this long is closed (the slave reconnects).",
        json_schema_extra=_key("haHousekeepingInterval"),
    )
    ha_transfer_batch_size_bytes: int = Field(
        32 * 1024,
        ge=1,
        description="Most CommitLog bytes a master sends in one transfer (a larger record goes"
        " alone).",
        json_schema_extra=_key("haTransferBatchSize"),
    )
    ha_slave_fallbehind_max_bytes: int = Field(
        256 * MiB,
        ge=0,
        description="SYNC_MASTER: a send is answered SLAVE_NOT_AVAILABLE at once (stored on the"
        " master only) when the slave is further behind than this.",
        json_schema_extra=_key("haSlaveFallbehindMax"),
    )

    message_delay_level: str = Field(
        "1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h",
        description="Delay of each delay level, in order (units ms, s, m, h, d).",
        json_schema_extra=_key("messageDelayLevel"),
    )

    timer_wheel_enable: bool = Field(
        True,
        description="Accept arbitrary-time delays (TIMER_DELIVER_MS, TIMER_DELAY_SEC,"
        " TIMER_DELAY_MS) and deliver each when due; false refuses them with SYSTEM_ERROR.",
        json_schema_extra=_key("timerWheelEnable"),
    )
    timer_max_delay_sec: int = Field(
        3 * 24 * 3600,
        ge=1,
        description="Longest delay a timer message may ask for; a longer one is refused with"
        " MESSAGE_ILLEGAL.",
        json_schema_extra=_key("timerMaxDelaySec"),
    )
    timer_precision_ms: int = Field(
        1000,
        ge=1,
        description="Width of one timer slot: a timer message is delivered once the slot holding"
        " its time has passed, never before that time. Snapped down to 100, 200, 500 or 1000, as"
        " RocketMQ does.",
        json_schema_extra=_key("timerPrecisionMs"),
    )

    @field_validator("timer_precision_ms")
    @classmethod
    def _precision(cls, v: int) -> int:
        from rmqkit.server.store.timer import snap_precision

        return snap_precision(v)

    @field_validator("message_delay_level")
    @classmethod
    def _levels(cls, v: str) -> str:
        from rmqkit.server.store.delay import parse_delay_levels

        parse_delay_levels(v)
        return v

    @property
    def delay_levels_ms(self) -> list[int]:
        from rmqkit.server.store.delay import parse_delay_levels

        return parse_delay_levels(self.message_delay_level)

    @field_validator("delete_when")
    @classmethod
    def _hours(cls, v: str) -> str:
        for part in v.split(";"):
            part = part.strip()
            if not part.isdigit() or not 0 <= int(part) <= 23:
                raise ValueError(f"deleteWhen takes hours 00-23 separated by ';', not {v!r}")
        return v

    @field_validator("ha_master_address")
    @classmethod
    def _ha_master(cls, v: str | None) -> str | None:
        if v is None or not v.strip():
            return None
        host, sep, port = v.strip().rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"haMasterAddress takes host:port, not {v!r}")
        return v.strip()

    @model_validator(mode="after")
    def _ratios(self) -> StoreSettings:
        if self.disk_space_clean_forcibly_ratio < self.disk_max_used_space_ratio:
            raise ConfigurationError(
                "diskSpaceCleanForciblyRatio must not be below diskMaxUsedSpaceRatio"
            )
        return self

    @property
    def commit_log_dir(self) -> Path:
        return self.store_path_commit_log or self.store_path_root_dir / "commitlog"

    @property
    def consume_queue_dir(self) -> Path:
        return self.store_path_consume_queue or self.store_path_root_dir / "consumequeue"

    @property
    def index_dir(self) -> Path:
        return self.store_path_index or self.store_path_root_dir / "index"

    @property
    def checkpoint_path(self) -> Path:
        return self.store_checkpoint or self.store_path_root_dir / "checkpoint"

    @property
    def abort_path(self) -> Path:
        return self.abort_file or self.store_path_root_dir / "abort"

    @property
    def consume_queue_file_entries(self) -> int:
        return -(-self.mapped_file_size_consume_queue_bytes // CQ_ENTRY_BYTES)

    @property
    def delete_hours(self) -> frozenset[int]:
        return frozenset(int(p) for p in self.delete_when.split(";"))

    @property
    def sync_flush(self) -> bool:
        return self.flush_disk_type == "SYNC_FLUSH"
