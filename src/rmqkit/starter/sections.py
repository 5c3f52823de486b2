"""The sections of the starter's settings (`rocketmq.producer.*`, `rocketmq.consumer.*`, ...),
as the pydantic models `RocketSettings` (`settings.py`) nests.

Each field's description is its documentation (`rmqkit config explain`, docs/configuration.md);
`_spring` records a Spring property name that differs from the field's kebab-case spelling.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from rmqkit.client.push_consumer import ConsumeFrom, ConsumeMode, MessageModel
from rmqkit.protocol.acl import SessionCredentials
from rmqkit.remoting.tls import ClientTls

MiB = 1024 * 1024
DAY_S = 24 * 60 * 60.0
_GROUP_RE = re.compile(r"^[%|a-zA-Z0-9_-]{1,255}$")


def _spring(key: str, *aliases: str) -> dict[str, Any]:
    """Field metadata: the Spring property name when it differs, and other accepted spellings."""
    return {"spring_key": key, "aliases": list(aliases)}


def blank_to_none(v: Any) -> Any:
    return None if isinstance(v, str) and not v.strip() else v


def upper_choice(v: Any) -> Any:
    return v.strip().upper() if isinstance(v, str) else v


def check_name_server(v: Any) -> Any:
    """`host:port;host:port`, blank as None; anything else is refused naming the bad entry."""
    v = blank_to_none(v)
    if isinstance(v, str):
        for a in v.split(";"):
            host, sep, port = a.strip().rpartition(":")
            if not sep or not host or not port.isdigit():
                raise ValueError(f"expected host:port separated by ';', not {a.strip()!r}")
    return v


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _KeyPair(_Section):
    access_key: str | None = Field(
        None, description="ACL access key: every request is signed with it and secret-key"
        " (RocketMQ's AclClientRPCHook), for brokers with aclEnable=true. None: unsigned.",
    )  # fmt: skip
    secret_key: SecretStr | None = Field(
        None, description="ACL secret key (set with access-key); masked by explain().",
        validate_default=True,
    )  # fmt: skip

    @field_validator("access_key", "secret_key", mode="before")
    @classmethod
    def _blank(cls, v: Any) -> Any:
        return blank_to_none(v)

    @field_validator("secret_key", mode="after")
    @classmethod
    def _key_pair(cls, v: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        has_access = info.data.get("access_key") is not None
        if has_access and v is None:
            raise ValueError("access-key is set but secret-key is not: ACL needs both")
        if v is not None and not has_access:
            raise ValueError("secret-key is set but access-key is not: ACL needs both")
        return v

    def credentials(self) -> SessionCredentials | None:
        """The ACL credentials requests are signed with, or None (no access key set)."""
        if self.access_key is None or self.secret_key is None:
            return None
        return SessionCredentials(self.access_key, self.secret_key.get_secret_value())


class _ClientCredentials(_KeyPair):
    instance_name: str = Field(
        "DEFAULT", description="Client instance name; clients sharing it share connections.",
    )  # fmt: skip
    namespace: str = Field("", description="Prefix isolating topics and groups ('' = none).")
    tls_enable: bool = Field(
        False, description="Connect to NameServers and brokers over TLS; rocketmq.tls.* says"
        " how far to trust them.",
    )  # fmt: skip
    enable_msg_trace: bool = Field(
        False, description="Also record RocketMQ's own message trace (what rocketmq-dashboard and"
        " mqadmin queryMsgTraceById show), next to OpenTelemetry's.",
    )  # fmt: skip
    customized_trace_topic: str = Field(
        "RMQ_SYS_TRACE_TOPIC", description="The topic of that trace (with access-channel=CLOUD:"
        " rmq_sys_TRACE_DATA_<region> instead).",
    )  # fmt: skip


class ProducerSettings(_ClientCredentials):
    """`rocketmq.producer.*`: the template's producer (created when a group is set)."""

    group: str | None = Field(None, description="Producer group; None: no template producer.")
    send_message_timeout_ms: int = Field(
        3000, gt=0, description="How long a send waits for the broker's reply.",
        json_schema_extra=_spring("send-message-timeout"),
    )  # fmt: skip
    compress_message_body_threshold_bytes: int = Field(
        4096, ge=0, description="Bodies larger than this are compressed before sending.",
        json_schema_extra=_spring("compress-message-body-threshold"),
    )  # fmt: skip
    retry_times_when_send_failed: int = Field(
        2, ge=0, description="Extra attempts of a failed synchronous send (may duplicate).",
    )  # fmt: skip
    retry_times_when_send_async_failed: int = Field(
        2, ge=0, description="Extra attempts of a failed asynchronous send (may duplicate).",
    )  # fmt: skip
    retry_next_server: bool = Field(
        False, description="Retry a synchronous send on another broker when the broker stored it"
        " but could not confirm it (flush or slave timeout, no slave).",
    )  # fmt: skip
    max_message_size_bytes: int = Field(
        4 * MiB, gt=0, description="Largest body the producer accepts.",
        json_schema_extra=_spring("max-message-size"),
    )  # fmt: skip

    @field_validator("group", mode="before")
    @classmethod
    def _group(cls, v: Any) -> Any:
        v = blank_to_none(v)
        if isinstance(v, str) and not _GROUP_RE.match(v):
            raise ValueError("a group name is 1-255 letters, digits, '%', '|', '_' or '-'")
        return v


class ListenerOverride(_KeyPair):
    """`rocketmq.consumer.listeners.<group>.<topic>`: one listener's switch and overrides.

    None keeps the value given to the `@rocket_listener` decorator. A bare boolean (Spring's
    `rocketmq.consumer.listeners.g1.orders=false`) sets `enabled`. `access-key` and
    `secret-key` sign this listener's consumer instead of `rocketmq.consumer.*`'s; `name-server`,
    `namespace`, `instance-name` and `tls-enable` point it at another cluster or namespace
    (Spring's per-listener `nameServer`, ...). Every listener of one group must agree on these:
    they share one consumer.
    """

    enabled: bool = Field(True, description="False: the listener is registered, never started.")
    tag: str | None = Field(None, description="Tag expression (`tagA || tagB`, `*`).")
    selector_sql: str | None = Field(
        None, description="SQL92 property filter (the broker needs enablePropertyFilter).",
    )  # fmt: skip
    consume_concurrency: int | None = Field(
        None, ge=1, description="Messages handled at once (Spring's consumeThreadNumber).",
        json_schema_extra=_spring("consume-concurrency", "consume-thread-number"),
    )  # fmt: skip
    max_reconsume_times: int | None = Field(
        None, ge=-1, description="Redeliveries before the DLQ; -1 = 16 (concurrent mode).",
    )  # fmt: skip
    delay_level_when_next_consume: int | None = Field(
        None, ge=-1, le=18,
        description="Concurrent retry: -1 straight to DLQ, 0 broker decides, 1-18 delay level.",
    )  # fmt: skip
    suspend_current_queue_time_ms: int | None = Field(
        None, ge=10, le=30_000, description="Orderly mode: pause before retrying a queue.",
        json_schema_extra=_spring(
            "suspend-current-queue-time-ms", "suspend-current-queue-time-millis"
        ),
    )  # fmt: skip
    consume_timeout_s: float | None = Field(
        None, gt=0, description="A handler running longer than this counts as failed.",
    )  # fmt: skip
    consume_from_where: ConsumeFrom | None = Field(
        None, description="Where a group with no committed offset starts.",
    )  # fmt: skip
    batch_size: int | None = Field(
        None, ge=1, le=1024, description="Messages per handler call.",
        json_schema_extra=_spring("batch-size", "consume-message-batch-max-size"),
    )  # fmt: skip
    message_model: MessageModel | None = Field(
        None, description="CLUSTERING (one member per message) or BROADCASTING (every member).",
    )  # fmt: skip
    consume_mode: ConsumeMode | None = Field(
        None, description="CONCURRENTLY, or ORDERLY (one queue at a time, in order).",
    )  # fmt: skip
    name_server: str | None = Field(
        None, description="This listener's NameServers (`host:port;...`); None: rocketmq."
        "name-server (or the embedded cluster).",
    )  # fmt: skip
    namespace: str | None = Field(
        None, description="This listener's namespace; None: rocketmq.consumer.namespace.",
    )  # fmt: skip
    instance_name: str | None = Field(
        None, description="This listener's client instance; None: rocketmq.consumer."
        "instance-name.",
    )  # fmt: skip
    tls_enable: bool | None = Field(
        None, description="TLS for this listener's consumer; None: rocketmq.consumer.tls-enable.",
    )  # fmt: skip

    @field_validator("name_server", mode="before")
    @classmethod
    def _addrs(cls, v: Any) -> Any:
        return check_name_server(v)

    @model_validator(mode="before")
    @classmethod
    def _bare_flag(cls, v: Any) -> Any:
        return v if isinstance(v, Mapping | BaseModel) else {"enabled": v}

    @field_validator("consume_from_where", "message_model", "consume_mode", mode="before")
    @classmethod
    def _choices(cls, v: Any) -> Any:
        return upper_choice(blank_to_none(v))


class ConsumerSettings(_ClientCredentials):
    """`rocketmq.consumer.*`: defaults for every listener's consumer, and per-listener keys."""

    await_termination_ms: int = Field(
        5000, ge=0, description="On shutdown, how long in-flight handlers may finish.",
        json_schema_extra=_spring("await-termination-ms", "await-termination-millis-when-shutdown"),
    )  # fmt: skip
    subscription_check: Literal["fail", "warn", "off"] = Field(
        "fail", description="Before a listener group starts, compare its subscription with the"
        " group's members already running (from the broker): fail, warn, or off.",
    )  # fmt: skip
    listeners: dict[str, dict[str, ListenerOverride]] = Field(
        default_factory=dict,
        description="[group][topic] -> switch and overrides; absent: enabled, decorator values.",
    )


class EmbeddedSettings(_Section):
    """`rocketmq.embedded.*`: the in-process NameServer + broker used when name-server is unset."""

    data_dir: Path | None = Field(
        None, description="The embedded broker's store; None: a temp dir removed at exit.",
    )  # fmt: skip
    namesrv_port: int = Field(0, ge=0, le=65535, description="NameServer port; 0: a free one.")
    broker_port: int = Field(0, ge=0, le=65535, description="Broker port; 0: a free one.")
    flush_disk_type: Literal["ASYNC_FLUSH", "SYNC_FLUSH"] = Field(
        "ASYNC_FLUSH", description="SYNC_FLUSH acknowledges a send only after fsync.",
    )  # fmt: skip
    broker_name: str = Field("broker-a", description="brokerName of the embedded broker.")
    cluster_name: str = Field("DefaultCluster", description="Its brokerClusterName.")

    @field_validator("flush_disk_type", mode="before")
    @classmethod
    def _choice(cls, v: Any) -> Any:
        return upper_choice(v)

    @field_validator("data_dir", mode="before")
    @classmethod
    def _blank(cls, v: Any) -> Any:
        return blank_to_none(v)


class IdempotencySettings(_Section):
    """`rocketmq.idempotency.*`: where consumers remember the messages they already handled."""

    store_url: str = Field(
        "sqlite:///rmqkit-idempotency.db",
        description="memory://, sqlite:///path or redis://host:port/db.",
    )
    lease_s: float = Field(
        60.0, gt=0, description="How long a delivery being handled holds back its duplicates.",
    )  # fmt: skip
    retention_s: float = Field(
        7 * DAY_S, gt=0, description="How long a handled message's record is kept.",
    )  # fmt: skip

    @field_validator("store_url")
    @classmethod
    def _scheme(cls, v: str) -> str:
        if not v.startswith(("memory://", "sqlite:///", "redis://", "rediss://")):
            raise ValueError("allowed: memory://, sqlite:///path, redis://host:port/db")
        return v


class TlsClientSettings(_Section):
    """`rocketmq.tls.*`: how clients with `tls-enable` trust NameServers and brokers.

    RocketMQ's Java clients read the same from `tls.client.*` system properties; the defaults
    are theirs: the connection is encrypted, the server's certificate is not checked.
    """

    verify_server: bool = Field(
        False, description="Check the server's certificate chain (Java: tls.client.authServer"
        " with tls.test.mode.enable=false).",
        json_schema_extra=_spring("verify-server", "auth-server", "client-auth-server"),
    )  # fmt: skip
    trust_cert_path: Path | None = Field(
        None, description="PEM CA certificates the server's chain must end in; None: the"
        " system's CAs.", json_schema_extra=_spring("trust-cert-path", "client-trust-cert-path"),
    )  # fmt: skip
    check_hostname: bool = Field(
        False, description="Also check that the certificate names the address connected to.",
    )  # fmt: skip
    cert_path: Path | None = Field(
        None, description="PEM certificate shown to servers that ask for one (mutual TLS).",
        json_schema_extra=_spring("cert-path", "client-cert-path"),
    )  # fmt: skip
    key_path: Path | None = Field(
        None, description="PEM private key of cert-path.",
        json_schema_extra=_spring("key-path", "client-key-path"),
    )  # fmt: skip
    key_password: SecretStr | None = Field(
        None, description="Password of an encrypted key-path; masked by explain().",
        json_schema_extra=_spring("key-password", "client-key-password"),
    )  # fmt: skip

    @field_validator("trust_cert_path", "cert_path", "key_path", "key_password", mode="before")
    @classmethod
    def _blank(cls, v: Any) -> Any:
        return blank_to_none(v)

    @model_validator(mode="after")
    def _pairs(self) -> TlsClientSettings:
        if (self.cert_path is None) != (self.key_path is None):
            raise ValueError("cert-path and key-path go together (a certificate and its key)")
        if (self.trust_cert_path is not None or self.check_hostname) and not self.verify_server:
            raise ValueError("trust-cert-path and check-hostname need verify-server=true")
        return self

    def client_tls(self) -> ClientTls:
        """The client's TLS settings (`rmqkit.remoting.tls.ClientTls`)."""
        password = self.key_password.get_secret_value() if self.key_password else None
        return ClientTls(
            verify=self.verify_server, trust_cert_path=self.trust_cert_path,
            check_hostname=self.check_hostname, cert_path=self.cert_path,
            key_path=self.key_path, key_password=password,
        )  # fmt: skip
