"""`producer_options`: every `rocketmq.producer.*` setting a `Producer` takes reaches it."""

from __future__ import annotations

import inspect

from rmqkit.client.producer import Producer
from rmqkit.starter.plumbing import producer_options
from rmqkit.starter.settings import ProducerSettings


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
