"""The replication keys: roles and ids that go together, HA keys read from broker.properties."""

from __future__ import annotations

import pytest

from rmqkit.errors import ConfigurationError
from rmqkit.server.properties import settings_from_properties


def test_a_slave_needs_a_broker_id_of_one_or_more() -> None:
    with pytest.raises(ConfigurationError, match=r"brokerRole=SLAVE needs brokerId >= 1"):
        settings_from_properties({"brokerRole": "SLAVE"})
    s = settings_from_properties({"brokerRole": "SLAVE", "brokerId": "2"})
    assert not s.is_master and s.broker_id == 2


@pytest.mark.parametrize("role", ["ASYNC_MASTER", "SYNC_MASTER"])
def test_a_master_needs_broker_id_zero(role: str) -> None:
    with pytest.raises(ConfigurationError, match=rf"brokerRole={role} needs brokerId=0"):
        settings_from_properties({"brokerRole": role, "brokerId": "1"})
    assert settings_from_properties({"brokerRole": role}).is_master


def test_the_ha_keys_are_read_and_applied_without_warnings() -> None:
    warnings: list[str] = []
    s = settings_from_properties(
        {
            "brokerRole": "SLAVE",
            "brokerId": "1",
            "haListenPort": "20912",
            "haMasterAddress": "10.0.0.1:10912",
            "haSendHeartbeatInterval": "1000",
            "haHousekeepingInterval": "9000",
            "haTransferBatchSize": "65536",
            "haSlaveFallbehindMax": "1024",
            "slaveReadEnable": "true",
            "accessMessageInMemoryMaxRatio": "30",
        },
        warn=warnings.append,
    )
    assert warnings == []
    st = s.store
    assert (st.ha_listen_port, st.ha_master_address) == (20912, "10.0.0.1:10912")
    assert (st.ha_send_heartbeat_interval_ms, st.ha_housekeeping_interval_ms) == (1000, 9000)
    assert (st.ha_transfer_batch_size_bytes, st.ha_slave_fallbehind_max_bytes) == (65536, 1024)
    assert s.slave_read_enable and st.access_message_in_memory_max_ratio == 30


def test_defaults_are_rocketmqs() -> None:
    s = settings_from_properties({})
    st = s.store
    assert st.ha_listen_port is None and st.ha_master_address is None
    assert (st.ha_send_heartbeat_interval_ms, st.ha_housekeeping_interval_ms) == (5000, 20000)
    assert (st.ha_transfer_batch_size_bytes, st.ha_slave_fallbehind_max_bytes) == (
        32768,
        268435456,
    )
    assert not s.slave_read_enable and st.access_message_in_memory_max_ratio == 40


@pytest.mark.parametrize("addr", ["10.0.0.1", ":10912", "host:port"])
def test_a_bad_master_address_is_named(addr: str) -> None:
    with pytest.raises(ConfigurationError, match="haMasterAddress"):
        settings_from_properties({"haMasterAddress": addr})
