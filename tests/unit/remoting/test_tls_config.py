"""Reading RocketMQ's `tls.*` keys: sources and their precedence, Java's test-mode semantics,
paths relative to the file that names them, and bad values named with where they came from."""

from __future__ import annotations

from pathlib import Path

import pytest

from rmqkit.errors import ConfigurationError
from rmqkit.remoting.tls import ClientTls, ServerTls, TlsMode
from rmqkit.remoting.tls_config import TlsSettings, env_name, load_tls

NO_ENV: dict[str, str] = {}


def load(props: dict[str, str] | None = None, **kw: object) -> tuple[TlsSettings, list[str]]:
    warnings: list[str] = []
    kw.setdefault("environ", NO_ENV)
    return load_tls(props, warn=warnings.append, **kw), warnings  # type: ignore[arg-type]


def test_rocketmq_defaults_permissive_self_signed_and_plain_outgoing(tmp_path: Path) -> None:
    settings, warnings = load(config_file=None, base_dir=tmp_path)
    assert settings == TlsSettings(ServerTls(TlsMode.PERMISSIVE), None)
    assert warnings == []


def test_env_names_follow_the_keys() -> None:
    assert env_name("tls.server.mode") == "RMQKIT_TLS_SERVER_MODE"
    assert env_name("tls.server.keyPath") == "RMQKIT_TLS_SERVER_KEY_PATH"
    assert env_name("tls.test.mode.enable") == "RMQKIT_TLS_TEST_MODE_ENABLE"
    assert env_name("tls.client.trustCertPath") == "RMQKIT_TLS_CLIENT_TRUST_CERT_PATH"


def test_environment_over_configuration_over_file(tmp_path: Path) -> None:
    tls_file = tmp_path / "conf" / "tls.properties"
    tls_file.parent.mkdir()
    tls_file.write_text(
        "tls.server.mode=enforcing\ntls.enable=true\ntls.test.mode.enable=false\n"
        "tls.server.certPath=broker.pem\ntls.server.keyPath=broker.key\n"
        "tls.client.authServer=true\ntls.client.trustCertPath=/etc/ca.pem\n"
    )
    props = {"tls.config.file": "conf/tls.properties", "tls.server.mode": "permissive"}
    env = {"RMQKIT_TLS_SERVER_MODE": "disabled", "RMQKIT_TLS_CLIENT_CHECK_HOSTNAME": "true"}
    settings, warnings = load(props, base_dir=tmp_path, environ=env)
    assert settings.server == ServerTls(
        TlsMode.DISABLED,
        cert_path=tmp_path / "conf" / "broker.pem",  # relative to the file that names it
        key_path=tmp_path / "conf" / "broker.key",
    )
    assert settings.client == ClientTls(
        verify=True, trust_cert_path=Path("/etc/ca.pem"), check_hostname=True
    )
    assert warnings == []


def test_an_explicit_file_wins_over_the_one_the_configuration_names(tmp_path: Path) -> None:
    (tmp_path / "a.properties").write_text("tls.server.mode=enforcing\n")
    (tmp_path / "b.properties").write_text("tls.server.mode=disabled\n")
    settings, _ = load(
        {"tls.config.file": "a.properties"},
        base_dir=tmp_path,
        config_file=tmp_path / "b.properties",
    )
    assert settings.server.mode is TlsMode.DISABLED
    env = {"RMQKIT_TLS_CONFIG_FILE": str(tmp_path / "b.properties")}
    settings, _ = load({"tls.config.file": "a.properties"}, base_dir=tmp_path, environ=env)
    assert settings.server.mode is TlsMode.DISABLED


def test_a_named_file_that_cannot_be_read_stops(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot read TLS settings from"):
        load({"tls.config.file": "missing.properties"}, base_dir=tmp_path)


def test_test_mode_ignores_a_configured_certificate_and_says_so(tmp_path: Path) -> None:
    props = {"tls.server.certPath": "/c.pem", "tls.server.keyPath": "/k.pem", "tls.enable": "true"}
    props["tls.client.authServer"] = "true"
    settings, warnings = load(props)
    assert settings.server.cert_path is None
    assert settings.client is not None and not settings.client.verify
    assert any("tls.server.certPath/keyPath are not used" in w for w in warnings)
    assert any("tls.client.authServer=true is not applied" in w for w in warnings)


def test_client_auth_without_auth_client_is_warned_about() -> None:
    settings, warnings = load({"tls.server.need.client.auth": "REQUIRE"})
    assert settings.server.client_auth == "require"
    assert any("verifies every client certificate" in w for w in warnings)


def test_bad_values_are_all_named_with_their_source(tmp_path: Path) -> None:
    env = {"RMQKIT_TLS_ENABLE": "yes"}
    with pytest.raises(ConfigurationError) as err:
        load({"tls.server.mode": "strict", "tls.server.need.client.auth": "maybe"}, environ=env)
    text = str(err.value)
    assert "tls.server.mode='strict' (the configuration): allowed: disabled, permissive" in text
    assert "tls.server.need.client.auth='maybe'" in text
    assert "tls.enable='yes' (RMQKIT_TLS_ENABLE): allowed: true, false" in text


def test_a_certificate_without_its_key_stops() -> None:
    with pytest.raises(ConfigurationError, match=r"needs tls\.server\.keyPath"):
        load({"tls.test.mode.enable": "false", "tls.server.certPath": "/c.pem"})


def test_unknown_tls_keys_are_named(tmp_path: Path) -> None:
    _, warnings = load({"tls.server.keypath": "/k.pem"})
    assert warnings == ["tls.server.keypath (the configuration): unknown TLS key; ignored"]
