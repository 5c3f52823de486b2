"""RocketSettings: env, .env, TOML and properties sources, Spring key spellings, precedence,
listener switches, warnings for unknown keys, error messages and `explain()`."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from rmqkit.errors import ConfigurationError
from rmqkit.remoting.tls import ClientTls
from rmqkit.starter.settings import ListenerOverride, RocketSettings

LOGGER = "rmqkit.starter.settings"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No ROCKETMQ_* variable of the developer's, and no .env of theirs (cwd is tmp_path)."""
    for name in list(os.environ):
        if name.upper().startswith("ROCKETMQ_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_mirror_spring() -> None:
    s = RocketSettings()
    assert s.name_server is None
    assert s.access_channel == "LOCAL"
    assert s.producer.group is None
    assert s.producer.send_message_timeout_ms == 3000
    assert s.producer.compress_message_body_threshold_bytes == 4096
    assert s.producer.retry_times_when_send_failed == 2
    assert s.producer.retry_times_when_send_async_failed == 2
    assert s.producer.retry_next_server is False
    assert s.producer.max_message_size_bytes == 4 * 1024 * 1024
    assert s.consumer.await_termination_ms == 5000
    assert s.consumer.listeners == {}
    assert s.embedded.data_dir is None
    assert s.embedded.flush_disk_type == "ASYNC_FLUSH"
    assert s.idempotency.store_url == "sqlite:///rmqkit-idempotency.db"
    assert s.idempotency.retention_s == 7 * 24 * 3600
    assert s.tracing_enabled is True


def test_environment_top_level_and_nested(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROCKETMQ_NAME_SERVER", "10.0.0.1:9876;10.0.0.2:9876")
    monkeypatch.setenv("ROCKETMQ_ACCESS_CHANNEL", "cloud")
    monkeypatch.setenv("ROCKETMQ_PRODUCER__GROUP", "orders-producer")
    monkeypatch.setenv("ROCKETMQ_PRODUCER__SEND_MESSAGE_TIMEOUT_MS", "1500")
    monkeypatch.setenv("ROCKETMQ_EMBEDDED__FLUSH_DISK_TYPE", "sync_flush")
    monkeypatch.setenv("ROCKETMQ_TRACING_ENABLED", "false")
    s = RocketSettings()
    assert s.name_server == "10.0.0.1:9876;10.0.0.2:9876"
    assert s.access_channel == "CLOUD"
    assert s.producer.group == "orders-producer"
    assert s.producer.send_message_timeout_ms == 1500
    assert s.embedded.flush_disk_type == "SYNC_FLUSH"
    assert s.tracing_enabled is False


def test_dotenv_file_is_read_and_its_other_lines_ignored(clean_env: Path) -> None:
    write(clean_env / ".env", "DATABASE_URL=postgres://x\nROCKETMQ_PRODUCER__GROUP=from-dotenv\n")
    assert RocketSettings().producer.group == "from-dotenv"
    assert RocketSettings(_env_file=None).producer.group is None
    other = write(clean_env / "other.env", "ROCKETMQ_NAME_SERVER=h:1\n")
    assert RocketSettings(_env_file=other).name_server == "h:1"


def test_toml_rocketmq_table(clean_env: Path) -> None:
    path = write(
        clean_env / "app.toml",
        '[database]\nurl = "x"\n\n[rocketmq]\nname-server = "127.0.0.1:9876"\n'
        '[rocketmq.producer]\ngroup = "g"\nsendMessageTimeout = 1200\n'
        '[rocketmq.idempotency]\nstore_url = "memory://"\n',
    )
    s = RocketSettings.from_file(path)
    assert s.name_server == "127.0.0.1:9876"
    assert s.producer.group == "g"
    assert s.producer.send_message_timeout_ms == 1200
    assert s.idempotency.store_url == "memory://"


def test_toml_bare_keys(clean_env: Path) -> None:
    path = write(clean_env / "rocketmq.toml", 'access-channel = "CLOUD"\nproducer.group = "g"\n')
    s = RocketSettings.from_file(str(path))
    assert s.access_channel == "CLOUD"
    assert s.producer.group == "g"


def test_properties_kebab_and_camel_case(clean_env: Path) -> None:
    path = write(
        clean_env / "application.properties",
        "server.port=8080\n"
        "rocketmq.name-server=127.0.0.1:9876\n"
        "rocketmq.producer.group=my-group\n"
        "rocketmq.producer.send-message-timeout=3500\n"
        "rocketmq.producer.compressMessageBodyThreshold=1024\n"
        "rocketmq.producer.maxMessageSize=65536\n"
        "rocketmq.producer.retry_next_server=true\n"
        "rocketmq.consumer.awaitTerminationMillisWhenShutdown=250\n"
        "rocketmq.embedded.data-dir=/tmp/rmq\n",
    )
    s = RocketSettings.from_file(path)
    assert s.name_server == "127.0.0.1:9876"
    assert s.producer.group == "my-group"
    assert s.producer.send_message_timeout_ms == 3500
    assert s.producer.compress_message_body_threshold_bytes == 1024
    assert s.producer.max_message_size_bytes == 65536
    assert s.producer.retry_next_server is True
    assert s.consumer.await_termination_ms == 250
    assert s.embedded.data_dir == Path("/tmp/rmq")


def test_spring_listener_flag_in_properties(clean_env: Path) -> None:
    path = write(
        clean_env / "application.properties",
        "rocketmq.consumer.listeners.OrderGroup.Orders=false\n"
        "rocketmq.consumer.listeners.OrderGroup.Refunds.enabled=false\n"
        "rocketmq.consumer.listeners.OrderGroup.Refunds.consume-thread-number=4\n"
        "rocketmq.consumer.listeners.PayGroup.Payments=true\n"
        "rocketmq.consumer.listeners.PayGroup.Payments.messageModel=broadcasting\n",
    )
    s = RocketSettings.from_file(path)
    assert s.listener_override("OrderGroup", "Orders") == ListenerOverride(enabled=False)
    refunds = s.listener_override("OrderGroup", "Refunds")
    assert (refunds.enabled, refunds.consume_concurrency) == (False, 4)
    payments = s.listener_override("PayGroup", "Payments")
    assert (payments.enabled, payments.message_model) == (True, "BROADCASTING")


def test_listener_flag_in_environment_keeps_case(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROCKETMQ_CONSUMER__LISTENERS__OrderGroup__Orders", "false")
    monkeypatch.setenv("ROCKETMQ_CONSUMER__LISTENERS__PayGroup__Payments__ENABLED", "false")
    monkeypatch.setenv("ROCKETMQ_CONSUMER__LISTENERS__PayGroup__Payments__BATCH_SIZE", "8")
    s = RocketSettings()
    assert set(s.consumer.listeners) == {"OrderGroup", "PayGroup"}
    assert s.listener_override("OrderGroup", "Orders").enabled is False
    payments = s.listener_override("PayGroup", "Payments")
    assert (payments.enabled, payments.batch_size) == (False, 8)


def test_listener_flag_in_dotenv_and_toml(clean_env: Path) -> None:
    write(clean_env / ".env", "ROCKETMQ_CONSUMER__LISTENERS__G1__T1=false\n")
    path = write(
        clean_env / "app.toml",
        "[rocketmq.consumer.listeners.G2]\nT2 = false\n"
        '[rocketmq.consumer.listeners.G3.T3]\nenabled = false\ntag = "a || b"\n',
    )
    s = RocketSettings.from_file(path)
    assert s.listener_override("G1", "T1").enabled is False
    assert s.listener_override("G2", "T2").enabled is False
    assert s.listener_override("G3", "T3") == ListenerOverride(enabled=False, tag="a || b")


def test_listener_override_default_and_init_forms() -> None:
    s = RocketSettings(
        consumer={"listeners": {"G": {"T": False, "U": {"consume_mode": "orderly"}}}}
    )
    assert s.listener_override("G", "T").enabled is False
    assert s.listener_override("G", "U").consume_mode == "ORDERLY"
    assert s.listener_override("g", "t").enabled is False  # case-insensitive fallback
    assert s.listener_override("G", "missing") == ListenerOverride()
    assert s.listener_override("nobody", "T").enabled is True


@pytest.mark.parametrize(
    ("layers", "expected"),
    [
        (("init", "env", "dotenv", "file"), "from-init"),
        (("env", "dotenv", "file"), "from-env"),
        (("dotenv", "file"), "from-dotenv"),
        (("file",), "from-file"),
        ((), None),
    ],
)
def test_precedence(
    layers: tuple[str, ...], expected: str | None, clean_env: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    path = write(clean_env / "app.properties", "")
    if "file" in layers:
        write(path, "rocketmq.producer.group=from-file\n")
    if "dotenv" in layers:
        write(clean_env / ".env", "ROCKETMQ_PRODUCER__GROUP=from-dotenv\n")
    if "env" in layers:
        monkeypatch.setenv("ROCKETMQ_PRODUCER__GROUP", "from-env")
    kwargs = {"producer": {"group": "from-init"}} if "init" in layers else {}
    assert RocketSettings.from_file(path, **kwargs).producer.group == expected


def test_layers_merge_per_key(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(
        clean_env / "app.properties",
        "rocketmq.producer.group=g\nrocketmq.producer.send-message-timeout=1000\n",
    )
    monkeypatch.setenv("ROCKETMQ_PRODUCER__SEND_MESSAGE_TIMEOUT_MS", "2000")
    s = RocketSettings.from_file(path)
    assert (s.producer.group, s.producer.send_message_timeout_ms) == ("g", 2000)


def test_unknown_file_keys_warn_and_are_ignored(
    clean_env: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(
        clean_env / "application.properties",
        "rocketmq.producer.gruop=g\nrocketmq.producer.namespace-v2=ns\n"
        "rocketmq.nameServer=h:1\nspring.application.name=app\n",
    )
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        s = RocketSettings.from_file(path)
    assert s.name_server == "h:1"
    assert s.producer.group is None
    text = caplog.text
    assert "rocketmq.producer.gruop" in text
    assert "did you mean 'group'?" in text
    assert "rocketmq.producer.namespace-v2" in text
    assert "a Spring starter key rmqkit does not apply (use namespace)" in text
    assert "spring" not in text


def test_unknown_environment_keys_warn(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("ROCKETMQ_PRODUCER__SEND_TIMEOUT", "5")
    write(clean_env / ".env", "ROCKETMQ_NAME_SERVR=h:1\nOTHER_APP_KEY=1\n")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        RocketSettings()
    assert "ROCKETMQ_PRODUCER__SEND_TIMEOUT (environment): unknown" in caplog.text
    assert "ROCKETMQ_NAME_SERVR (.env): unknown" in caplog.text
    assert "did you mean 'name-server'?" in caplog.text
    assert "OTHER_APP_KEY" not in caplog.text


def test_bad_file_value_names_spring_key_file_and_allowed_values(clean_env: Path) -> None:
    path = write(clean_env / "application.properties", "rocketmq.access-channel=INTERNET\n")
    with pytest.raises(ConfigurationError) as err:
        RocketSettings.from_file(path)
    msg = str(err.value)
    assert "rocketmq.access-channel='INTERNET'" in msg
    assert f"file {path}" in msg
    assert "'LOCAL' or 'CLOUD'" in msg


def test_bad_env_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROCKETMQ_CONSUMER__LISTENERS__G__T__MESSAGE_MODEL", "everyone")
    monkeypatch.setenv("ROCKETMQ_PRODUCER__SEND_MESSAGE_TIMEOUT_MS", "soon")
    with pytest.raises(ConfigurationError) as err:
        RocketSettings()
    msg = str(err.value)
    assert "rocketmq.consumer.listeners.G.T.message-model='EVERYONE'" in msg
    assert "ROCKETMQ_CONSUMER__LISTENERS__G__T__MESSAGE_MODEL (environment)" in msg
    assert "'CLUSTERING' or 'BROADCASTING'" in msg
    assert "rocketmq.producer.send-message-timeout='soon'" in msg
    assert isinstance(err.value, ValueError)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"name_server": "localhost"}, "expected host:port separated by ';'"),
        ({"producer": {"group": "bad group"}}, "rocketmq.producer.group='bad group'"),
        ({"producer": {"gruop": "g"}}, "rocketmq.producer.gruop"),
        ({"idempotency": {"store_url": "mysql://x"}}, "allowed: memory://"),
        ({"embedded": {"broker_port": 70000}}, "rocketmq.embedded.broker-port=70000"),
    ],
)
def test_bad_init_values(kwargs: dict[str, object], fragment: str) -> None:
    with pytest.raises(ConfigurationError, match="from a keyword argument") as err:
        RocketSettings(**kwargs)
    assert fragment in str(err.value)


def test_bad_secret_is_not_echoed() -> None:
    with pytest.raises(ConfigurationError) as err:
        RocketSettings(producer={"secret_key": 12345})
    assert "12345" not in str(err.value)


def test_unreadable_files(clean_env: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot read"):
        RocketSettings.from_file(clean_env / "missing.properties")
    with pytest.raises(ConfigurationError, match="cannot read"):
        RocketSettings.from_file(write(clean_env / "bad.toml", "[rocketmq\n"))


def test_explain_sources_and_masking(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(
        clean_env / "app.toml",
        '[rocketmq]\nname-server = "h:1"\n[rocketmq.producer]\naccess-key = "ak"\n'
        'secret-key = "hunter2"\n'
        "[rocketmq.consumer.listeners.G]\nT = false\n",
    )
    monkeypatch.setenv("ROCKETMQ_IDEMPOTENCY__STORE_URL", "redis://:pa55word@cache:6379/0")
    s = RocketSettings.from_file(path, tracing_enabled=False)
    rows = {key: (value, source) for key, value, source in s.explain()}
    assert rows["rocketmq.name-server"] == ("h:1", "file")
    assert rows["rocketmq.producer.secret-key"] == ("******", "file")
    assert rows["rocketmq.consumer.secret-key"] == ("", "default")
    assert rows["rocketmq.idempotency.store-url"] == ("redis://:******@cache:6379/0", "env")
    assert rows["rocketmq.tracing-enabled"] == ("false", "init")
    assert rows["rocketmq.producer.send-message-timeout"] == ("3000", "default")
    assert rows["rocketmq.consumer.listeners.G.T.enabled"] == ("false", "file")
    assert not any("hunter2" in v or "pa55word" in v for v, _ in rows.values())


def test_docs_list_every_key() -> None:
    docs = Path(__file__).parents[3] / "docs" / "configuration.md"
    text = docs.read_text(encoding="utf-8")
    assert "## Starter settings (rocketmq.*)" in text
    for key, _, _ in RocketSettings(_env_file=None).explain():
        assert f"`{key}`" in text, key
    assert "`rocketmq.consumer.listeners.<group>.<topic>`" in text


def test_malformed_structured_env_value_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ROCKETMQ_PRODUCER", "not json")
    with pytest.raises(ConfigurationError, match="producer"):
        RocketSettings()


def test_listener_variable_without_topic_warns_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("ROCKETMQ_CONSUMER__LISTENERS__OrderGroup", "false")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        s = RocketSettings()
    assert s.consumer.listeners == {}
    assert [r.getMessage() for r in caplog.records] == [
        "ROCKETMQ_CONSUMER__LISTENERS__OrderGroup: expected <group>.<topic>[.<key>]; ignored"
    ]


@pytest.mark.parametrize(
    ("section", "missing"),
    [({"access_key": "app-key-1"}, "secret-key"), ({"secret_key": "app-secret-1"}, "access-key")],
)
def test_acl_keys_come_in_pairs(clean_env: Path, section: dict[str, str], missing: str) -> None:
    with pytest.raises(ConfigurationError, match=f"but {missing} is not: ACL needs both") as err:
        RocketSettings(consumer=section)
    assert "app-secret-1" not in str(err.value)


def test_acl_credentials_from_the_key_pair(clean_env: Path) -> None:
    s = RocketSettings(producer={"access_key": "app-key-1", "secret_key": "app-secret-1"})
    creds = s.producer.credentials()
    assert creds is not None
    assert (creds.access_key, creds.secret_key) == ("app-key-1", "app-secret-1")
    assert s.consumer.credentials() is None


def test_a_listener_signs_with_its_own_keys(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ROCKETMQ_CONSUMER__LISTENERS__billing__order__ACCESS_KEY", "bill-key")
    monkeypatch.setenv("ROCKETMQ_CONSUMER__LISTENERS__billing__order__SECRET_KEY", "bill-secret")
    s = RocketSettings()
    creds = s.listener_override("billing", "order").credentials()
    assert creds is not None and (creds.access_key, creds.secret_key) == ("bill-key", "bill-secret")
    assert s.listener_override("billing", "refund").credentials() is None
    rows = {key: value for key, value, _ in s.explain()}
    assert rows["rocketmq.consumer.listeners.billing.order.secret-key"] == "******"
    assert not any("bill-secret" in v for v in rows.values())


def test_a_listener_key_needs_its_secret(clean_env: Path) -> None:
    with pytest.raises(ConfigurationError, match="ACL needs both") as err:
        RocketSettings(consumer={"listeners": {"billing": {"order": {"secret_key": "s3cr3t"}}}})
    assert "s3cr3t" not in str(err.value)


# -- TLS and per-listener clusters ---------------------------------------------------------------


def test_tls_keys_from_a_spring_properties_file(
    clean_env: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(
        clean_env / "application.properties",
        "rocketmq.producer.tls-enable=true\nrocketmq.consumer.tlsEnable=true\n"
        "rocketmq.tls.client-auth-server=true\nrocketmq.tls.trust-cert-path=/etc/ca.pem\n"
        "rocketmq.tls.cert-path=/etc/me.pem\nrocketmq.tls.key-path=/etc/me.key\n"
        "rocketmq.tls.key-password=k3y-pass\n",
    )
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        s = RocketSettings.from_file(path)
    assert caplog.text == ""  # tls-enable is applied now, not warned about
    assert s.producer.tls_enable and s.consumer.tls_enable
    assert s.tls.client_tls() == ClientTls(
        verify=True, trust_cert_path=Path("/etc/ca.pem"), cert_path=Path("/etc/me.pem"),
        key_path=Path("/etc/me.key"), key_password="k3y-pass",
    )  # fmt: skip
    rows = {key: value for key, value, _ in s.explain()}
    assert rows["rocketmq.tls.key-password"] == "******"
    assert rows["rocketmq.tls.verify-server"] == "true"


@pytest.mark.parametrize(
    ("tls", "fragment"),
    [
        ({"cert_path": "/etc/me.pem"}, "cert-path and key-path go together"),
        ({"trust_cert_path": "/etc/ca.pem"}, "need verify-server=true"),
        ({"check_hostname": True}, "need verify-server=true"),
    ],
)
def test_tls_settings_that_cannot_work_are_refused(tls: dict[str, object], fragment: str) -> None:
    with pytest.raises(ConfigurationError, match=fragment):
        RocketSettings(tls=tls)


def test_a_listener_may_consume_from_another_cluster_and_namespace(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefix = "ROCKETMQ_CONSUMER__LISTENERS__audit__order__"
    monkeypatch.setenv(prefix + "NAME_SERVER", "10.0.0.9:9876;10.0.0.10:9876")
    monkeypatch.setenv(prefix + "NAMESPACE", "audit-ns")
    monkeypatch.setenv(prefix + "INSTANCE_NAME", "audit-1")
    monkeypatch.setenv(prefix + "TLS_ENABLE", "true")
    o = RocketSettings().listener_override("audit", "order")
    assert (o.name_server, o.namespace, o.instance_name, o.tls_enable) == (
        "10.0.0.9:9876;10.0.0.10:9876", "audit-ns", "audit-1", True,
    )  # fmt: skip
    assert RocketSettings().listener_override("audit", "refund").name_server is None


def test_a_bad_listener_name_server_is_named(clean_env: Path) -> None:
    path = write(
        clean_env / "app.properties", "rocketmq.consumer.listeners.audit.order.name-server=nope\n"
    )
    with pytest.raises(ConfigurationError) as err:
        RocketSettings.from_file(path)
    text = str(err.value)
    assert "rocketmq.consumer.listeners.audit.order.name-server='nope'" in text
    assert "expected host:port" in text
