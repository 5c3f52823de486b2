"""KVConfig: namespaced values, persisted in Java's kvConfig.json layout."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from rmqkit.errors import ConfigurationError
from rmqkit.server.namesrv.kv_config import KVConfig


def test_put_get_delete_in_memory() -> None:
    kv = KVConfig()
    kv.load()
    assert kv.get("ns", "k") is None
    assert kv.namespace("ns") is None
    kv.put("ns", "k", "v")
    assert kv.get("ns", "k") == "v"
    assert kv.namespace("ns") == {"k": "v"}
    kv.delete("ns", "k")
    kv.delete("ns", "missing")
    kv.delete("other", "k")
    assert kv.get("ns", "k") is None
    assert kv.namespace("ns") == {}  # the namespace stays, as in Java


def test_persisted_and_reloaded(tmp_path: Path) -> None:
    path = tmp_path / "conf" / "kvConfig.json"
    kv = KVConfig(path)
    kv.put("ORDER_TOPIC_CONFIG", "T", "broker-a:4")
    kv.put("ns", "k", "v")
    kv.delete("ns", "k")
    assert orjson.loads(path.read_bytes()) == {
        "configTable": {"ORDER_TOPIC_CONFIG": {"T": "broker-a:4"}, "ns": {}}
    }
    again = KVConfig(path)
    again.load()
    assert again.get("ORDER_TOPIC_CONFIG", "T") == "broker-a:4"


def test_missing_file_is_an_empty_table(tmp_path: Path) -> None:
    kv = KVConfig(tmp_path / "absent.json")
    kv.load()
    assert kv.namespace("ns") is None


@pytest.mark.parametrize("content", [b"{not json", b"[1, 2]", b'{"configTable": {"ns": 3}}'])
def test_unreadable_file_stops_loading(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "kvConfig.json"
    path.write_bytes(content)
    with pytest.raises(ConfigurationError, match=r"kvConfig\.json"):
        KVConfig(path).load()
