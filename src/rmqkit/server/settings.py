"""Broker settings: broker.properties keys and environment overrides, as typed models.

`BrokerSettings` mirrors RocketMQ's `BrokerConfig` (and nests `StoreSettings` for
`MessageStoreConfig`). Values come from a broker.properties file (`server/properties.py`) and from
the environment (`RMQKIT_LISTEN_PORT=10912`, `RMQKIT_STORE__FLUSH_DISK_TYPE=SYNC_FLUSH`); the
environment wins.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator
from pydantic.json_schema import JsonDict  # type: ignore[attr-defined]
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from rmqkit.common.topic import PERM_RW
from rmqkit.errors import ConfigurationError
from rmqkit.server.store.settings import BrokerRole, StoreSettings


def _key(name: str) -> JsonDict:
    return {"broker_key": name}


class BrokerSettings(BaseSettings):
    """Who the broker is, where it listens, whom it registers with, and how it behaves."""

    model_config = SettingsConfigDict(
        env_prefix="RMQKIT_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    broker_cluster_name: str = Field(
        "DefaultCluster", description="Cluster this broker belongs to.",
        json_schema_extra=_key("brokerClusterName"),
    )  # fmt: skip
    broker_name: str = Field(
        "broker-a", description="Masters and slaves of one broker share this name.",
        json_schema_extra=_key("brokerName"),
    )  # fmt: skip
    broker_id: int = Field(
        0, ge=0, description="0 is the master; slaves use 1, 2, ...",
        json_schema_extra=_key("brokerId"),
    )  # fmt: skip
    namesrv_addr: str | None = Field(
        None, description="NameServers, `host:port` separated by ';'. None: register nowhere.",
        json_schema_extra=_key("namesrvAddr"),
    )  # fmt: skip
    broker_ip1: str = Field(
        "127.0.0.1", description="The address clients reach this broker at (also in message ids).",
        json_schema_extra=_key("brokerIP1"),
    )  # fmt: skip
    broker_ip2: str | None = Field(
        None, description="The address slaves replicate from; default brokerIP1.",
        json_schema_extra=_key("brokerIP2"),
    )  # fmt: skip
    listen_host: str = Field(
        "0.0.0.0", description="Interface the broker listens on.",
        json_schema_extra=_key("listenHost"),
    )  # fmt: skip
    listen_port: int = Field(
        10911, ge=0, le=65535, description="Client port (0 picks a free port).",
        json_schema_extra=_key("listenPort"),
    )  # fmt: skip
    broker_role: BrokerRole = Field(
        "ASYNC_MASTER", description="Replication role: a SYNC_MASTER answers a send once a slave"
        " has it (else FLUSH_SLAVE_TIMEOUT or SLAVE_NOT_AVAILABLE), an ASYNC_MASTER at once; a"
        " SLAVE copies its master (brokerId >= 1, same brokerName) and refuses sends.",
        json_schema_extra=_key("brokerRole"),
    )  # fmt: skip
    slave_read_enable: bool = Field(
        False, description="Let consumers read from a slave when the messages they pull are no"
        " longer in the master's memory (accessMessageInMemoryMaxRatio).",
        json_schema_extra=_key("slaveReadEnable"),
    )  # fmt: skip
    region_id: str = Field(
        "DefaultRegion", description="Region stamped on every stored message (MSG_REGION) and"
        " send reply; clients with accessChannel=CLOUD trace to rmq_sys_TRACE_DATA_<region>.",
        json_schema_extra=_key("regionId"),
    )  # fmt: skip
    trace_on: bool = Field(
        True, description="Stamped on every stored message (TRACE_ON): false asks clients not"
        " to trace its consumption.",
        json_schema_extra=_key("traceOn"),
    )  # fmt: skip
    broker_permission: int = Field(
        PERM_RW, ge=0, le=7, description="6 read+write, 4 read only, 2 write only.",
        json_schema_extra=_key("brokerPermission"),
    )  # fmt: skip
    default_topic_queue_nums: int = Field(
        8, ge=1, le=1024, description="Queues of an auto-created topic (at most what the producer"
        " asks for).", json_schema_extra=_key("defaultTopicQueueNums"),
    )  # fmt: skip
    auto_create_topic_enable: bool = Field(
        True, description="Create a topic on its first send (through the TBW102 template).",
        json_schema_extra=_key("autoCreateTopicEnable"),
    )  # fmt: skip
    auto_create_subscription_group: bool = Field(
        True, description="Create a consumer group's configuration on first use.",
        json_schema_extra=_key("autoCreateSubscriptionGroup"),
    )  # fmt: skip
    long_polling_enable: bool = Field(
        True, description="Hold a pull that finds nothing until a message arrives or it times out.",
        json_schema_extra=_key("longPollingEnable"),
    )  # fmt: skip
    max_suspend_ms: int = Field(
        15_000, ge=0, description="Longest a pull is held, whatever the client asks.",
        json_schema_extra=_key("maxSuspendMillis"),
    )  # fmt: skip
    notify_consumer_ids_changed_enable: bool = Field(
        True, description="Tell a group's consumers when a member joins or leaves.",
        json_schema_extra=_key("notifyConsumerIdsChangedEnable"),
    )  # fmt: skip
    register_name_server_period_ms: int = Field(
        30_000, ge=1_000, le=60_000, description="How often the broker registers with every"
        " NameServer.", json_schema_extra=_key("registerNameServerPeriod"),
    )  # fmt: skip
    channel_expired_timeout_ms: int = Field(
        120_000, ge=1_000, description="A client silent this long is dropped from its groups.",
        json_schema_extra=_key("channelExpiredTimeout"),
    )  # fmt: skip
    flush_consumer_offset_interval_ms: int = Field(
        5_000, ge=100, description="How often consumer offsets are written to disk.",
        json_schema_extra=_key("flushConsumerOffsetInterval"),
    )  # fmt: skip
    flush_delay_offset_interval_ms: int = Field(
        10_000, ge=100, description="How often the progress of delay levels is written to disk.",
        json_schema_extra=_key("flushDelayOffsetInterval"),
    )  # fmt: skip
    enable_property_filter: bool = Field(
        False, description="Let consumers filter by SQL92 expressions over message properties.",
        json_schema_extra=_key("enablePropertyFilter"),
    )  # fmt: skip
    transaction_timeout_ms: int = Field(
        6_000, ge=0, description="A half message unresolved this long is checked with its"
        " producer.", json_schema_extra=_key("transactionTimeOut"),
    )  # fmt: skip
    transaction_check_interval_ms: int = Field(
        30_000, ge=100, description="How often unresolved half messages are checked.",
        json_schema_extra=_key("transactionCheckInterval"),
    )  # fmt: skip
    transaction_check_max: int = Field(
        15, ge=1, description="Checks before an unresolved half message is discarded (logged).",
        json_schema_extra=_key("transactionCheckMax"),
    )  # fmt: skip
    trace_topic_enable: bool = Field(
        False, description="Create the message trace topic (msgTraceTopicName, 1 queue) at"
        " start-up, so clients with message trace on can write to it.",
        json_schema_extra=_key("traceTopicEnable"),
    )  # fmt: skip
    msg_trace_topic_name: str = Field(
        "RMQ_SYS_TRACE_TOPIC", description="The topic traceTopicEnable creates.",
        json_schema_extra=_key("msgTraceTopicName"),
    )  # fmt: skip
    store_reply_message_enable: bool = Field(
        True, description="Also store replies (request-reply) in <cluster>_REPLY_TOPIC, besides"
        " pushing them to the requester.", json_schema_extra=_key("storeReplyMessageEnable"),
    )  # fmt: skip
    acl_enable: bool = Field(
        False, description="Check every request against plain ACL (accounts in plain_acl.yml,"
        " signed requests, topic and group permissions).", json_schema_extra=_key("aclEnable"),
    )  # fmt: skip
    rocketmq_home: Path | None = Field(
        None, description="RocketMQ home: with aclEnable, the ACL files are its"
        " conf/plain_acl.yml and conf/acl/*.yml. Default $ROCKETMQ_HOME; without either, they"
        " are looked for beside the properties file.", json_schema_extra=_key("rocketmqHome"),
    )  # fmt: skip
    config_dir: Path | None = Field(
        None, description="The folder of the properties file the settings came from (set by"
        " the loader; relative paths and the ACL files are found from it).",
    )  # fmt: skip
    config_file: Path | None = Field(
        None, description="The properties file the settings came from (set by the loader):"
        " where UPDATE_BROKER_CONFIG keeps what it changes.",
    )  # fmt: skip
    send_message_thread_pool_nums: int = Field(
        1, ge=1, description="Accepted for compatibility; rmqkit serves requests on one event"
        " loop and has no thread pools.", json_schema_extra=_key("sendMessageThreadPoolNums"),
    )  # fmt: skip
    pull_message_thread_pool_nums: int = Field(
        1, ge=1, description="Accepted for compatibility; see sendMessageThreadPoolNums.",
        json_schema_extra=_key("pullMessageThreadPoolNums"),
    )  # fmt: skip
    store: StoreSettings = Field(default_factory=StoreSettings)

    @field_validator("namesrv_addr")
    @classmethod
    def _addrs(cls, v: str | None) -> str | None:
        if v is None or not v.strip():
            return None
        for a in v.split(";"):
            host, sep, port = a.strip().rpartition(":")
            if not sep or not host or not port.isdigit():
                raise ValueError(f"namesrvAddr takes host:port separated by ';', not {a!r}")
        return v

    @model_validator(mode="after")
    def _role_and_id(self) -> BrokerSettings:
        if self.broker_role == "SLAVE" and self.broker_id < 1:
            raise ConfigurationError(
                "brokerRole=SLAVE needs brokerId >= 1 (0 is the master's id), not brokerId="
                f"{self.broker_id}"
            )
        if self.broker_role != "SLAVE" and self.broker_id != 0:
            raise ConfigurationError(
                f"brokerRole={self.broker_role} needs brokerId=0, not brokerId={self.broker_id}"
                " (a slave is brokerRole=SLAVE with brokerId 1, 2, ...)"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment overrides the properties file, which arrives as init values.
        return env_settings, init_settings

    @property
    def namesrv_addrs(self) -> list[str]:
        return [a.strip() for a in (self.namesrv_addr or "").split(";") if a.strip()]

    @property
    def is_master(self) -> bool:
        return self.broker_role != "SLAVE"

    @property
    def broker_addr(self) -> str:
        return f"{self.broker_ip1}:{self.listen_port}"

    def with_port(self, port: int) -> BrokerSettings:
        """A copy with the port actually bound (after listening on port 0)."""
        return self.model_copy(update={"listen_port": port})


def broker_keys() -> dict[str, tuple[str | None, str]]:
    """broker.properties key -> (nested model or None, field name)."""
    out: dict[str, tuple[str | None, str]] = {}
    for model, prefix in ((BrokerSettings, None), (StoreSettings, "store")):
        for name, f in model.model_fields.items():
            extra: Any = f.json_schema_extra
            if isinstance(extra, dict) and "broker_key" in extra:
                out[str(extra["broker_key"])] = (prefix, name)
    return out


_EFFECTIVE_PATHS = {
    "store_path_commit_log": "commit_log_dir",
    "store_path_consume_queue": "consume_queue_dir",
    "store_path_index": "index_dir",
    "store_checkpoint": "checkpoint_path",
    "abort_file": "abort_path",
}
"""Store paths that default to a place under storePathRootDir: shown where they are."""


def broker_properties(settings: BrokerSettings) -> dict[str, str]:
    """Every broker.properties key with the value the broker runs with, as Java writes values
    (`true`/`false`, plain numbers, paths): the body of GET_BROKER_CONFIG. A key with no value
    (an unset `namesrvAddr`, `haMasterAddress`) is left out, as Java leaves out nulls."""
    out: dict[str, str] = {}
    for key, (nested, name) in sorted(broker_keys().items()):
        owner: Any = settings.store if nested == "store" else settings
        value = getattr(owner, name)
        if value is None and name in _EFFECTIVE_PATHS:
            value = getattr(owner, _EFFECTIVE_PATHS[name])
        if value is None:
            continue
        out[key] = str(value).lower() if isinstance(value, bool) else str(value)
    if settings.broker_ip2 is None:
        out["brokerIP2"] = settings.broker_ip1
    return out
