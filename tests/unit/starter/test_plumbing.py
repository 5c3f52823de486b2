"""`producer_options`: every `rocketmq.producer.*` setting a `Producer` takes reaches it;
`group_endpoint`: a listener group connects where and as its listeners' keys say."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import pytest

from rmqkit.client.producer import Producer
from rmqkit.errors import ConfigurationError
from rmqkit.protocol.acl import SessionCredentials
from rmqkit.remoting.tls import ClientTls
from rmqkit.starter.plumbing import group_endpoint, producer_options
from rmqkit.starter.settings import ProducerSettings, RocketSettings, TlsClientSettings
from rmqkit.starter.transport import Endpoint


def test_the_options_are_producer_keywords_with_the_settings_values() -> None:
    s = ProducerSettings(retry_next_server=True, retry_times_when_send_failed=5)
    options = producer_options(s)
    assert set(options) <= set(inspect.signature(Producer).parameters)
    assert options["retry_another_broker_when_not_store_ok"] is True
    assert options["retry_times_when_send_failed"] == 5
    assert producer_options(ProducerSettings())["retry_another_broker_when_not_store_ok"] is False


def test_acl_keys_become_the_producers_credentials() -> None:
    assert "credentials" not in producer_options(ProducerSettings())
    creds = producer_options(
        ProducerSettings(access_key="app-key-1", secret_key="app-secret-1")  # type: ignore[arg-type]
    )["credentials"]
    assert (creds.access_key, creds.secret_key) == ("app-key-1", "app-secret-1")


def test_tls_enable_gives_the_producer_the_tls_section_as_client_tls(tmp_path: Path) -> None:
    assert "tls" not in producer_options(ProducerSettings())
    tls = TlsClientSettings(verify_server=True, trust_cert_path=tmp_path / "ca.pem")
    options = producer_options(ProducerSettings(tls_enable=True), tls)
    assert options["tls"] == ClientTls(verify=True, trust_cert_path=tmp_path / "ca.pem")
    assert producer_options(ProducerSettings(tls_enable=True))["tls"] == ClientTls()


def test_message_trace_keys_reach_the_producer_with_the_access_channel() -> None:
    assert "enable_msg_trace" not in producer_options(ProducerSettings(), None, "CLOUD")
    traced = ProducerSettings(enable_msg_trace=True, customized_trace_topic="MyTrace")
    options = producer_options(traced, None, "CLOUD")
    assert (options["enable_msg_trace"], options["trace_topic"]) == (True, "MyTrace")
    assert options["access_channel"] == "CLOUD"
    assert set(options) <= set(inspect.signature(Producer).parameters)


# -- group_endpoint: where a listener group's consumer connects ----------------------------------


def _settings(**kw: Any) -> RocketSettings:
    return RocketSettings(_env_file=None, **kw)


def test_a_group_without_overrides_uses_the_consumer_section() -> None:
    s = _settings(consumer={"namespace": "shop", "instance_name": "billing-1", "tls_enable": True,
                            "access_key": "shopApp01", "secret_key": "shopSecret01"})  # fmt: skip
    e = group_endpoint(s, "billing", ["order", "refund"])
    assert e == Endpoint(
        None, "shop", "billing-1", SessionCredentials("shopApp01", "shopSecret01"), ClientTls()
    )


def test_a_listeners_own_keys_win_for_its_group() -> None:
    own = {"name_server": "10.0.0.9:9876", "namespace": "audit", "instance_name": "aud",
           "tls_enable": False}  # fmt: skip
    s = _settings(consumer={"tls_enable": True, "listeners": {"audit": {"order": own}}})
    assert group_endpoint(s, "audit", ["order"]) == Endpoint("10.0.0.9:9876", "audit", "aud")
    assert group_endpoint(s, "billing", ["order"]) == Endpoint(tls=ClientTls())


def test_listeners_of_one_group_that_connect_differently_are_named() -> None:
    other = {"name_server": "10.0.0.9:9876", "tls_enable": True}
    s = _settings(consumer={"listeners": {"audit": {"order": other}}})
    with pytest.raises(ConfigurationError) as err:
        group_endpoint(s, "audit", ["order", "refund"])
    text = str(err.value)
    assert "listeners of group 'audit' connect differently" in text
    assert "name-server: order='10.0.0.9:9876', refund=default" in text
    assert "tls-enable: order=on, refund=default" in text
    assert "namespace" not in text.split("(")[1].split(")")[0]  # only what differs


def test_listeners_of_one_group_that_sign_differently_keep_the_acl_message() -> None:
    keys = {"access_key": "auditApp01", "secret_key": "auditSecret01"}
    s = _settings(consumer={"listeners": {"audit": {"order": keys}}})
    with pytest.raises(ConfigurationError, match="sign with different ACL keys") as err:
        group_endpoint(s, "audit", ["order", "refund"])
    assert "auditSecret01" not in str(err.value)
