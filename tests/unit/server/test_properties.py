"""broker.properties parsing: Java Properties syntax, key mapping, warnings, errors, env."""

from __future__ import annotations

from pathlib import Path

import pytest

from rmqkit.errors import ConfigurationError
from rmqkit.server.properties import (
    load_broker_settings,
    parse_properties,
    settings_from_properties,
)


def test_java_properties_syntax() -> None:
    text = (
        "# comment\n! also a comment\n  brokerName = broker-b  \nbrokerId:1\nbrokerRole SLAVE\n"
        "storePathRootDir=/data/a\\\n   /b\nkey\\ with\\ spaces=v\n"
        "unicode=\\u00e9t\\u00e9\nempty=\n"
    )
    p = parse_properties(text)
    assert p == {
        "brokerName": "broker-b",
        "brokerId": "1",
        "brokerRole": "SLAVE",
        "storePathRootDir": "/data/a/b",
        "key with spaces": "v",
        "unicode": "été",
        "empty": "",
    }


def test_store_keys_old_spellings_and_relative_paths(tmp_path: Path) -> None:
    warnings: list[str] = []
    s = settings_from_properties(
        {
            "mapedFileSizeCommitLog": "2097152",
            "mappedFileSizeConsumeQueue": "6000",
            "storePathRootDir": "store",
            "storePathCommitLog": "/abs/commitlog",
            "diskMaxUsedSpaceRatio": "80",
            "maxMessageSize": "65536",
        },
        base_dir=tmp_path,
        warn=warnings.append,
    )
    assert s.store.mapped_file_size_commit_log_bytes == 2097152
    assert s.store.consume_queue_file_entries == 300
    assert s.store.store_path_root_dir == tmp_path / "store"
    assert s.store.commit_log_dir == Path("/abs/commitlog")
    assert warnings == []


def test_unknown_and_not_yet_applied_keys_are_named() -> None:
    warnings: list[str] = []
    settings_from_properties({"fooBar": "1", "enableDLegerCommitLog": "true"}, warn=warnings.append)
    assert warnings == [
        "fooBar: unknown broker.properties key; ignored",
        "enableDLegerCommitLog: known to RocketMQ, not applied by rmqkit yet; ignored",
    ]


def test_acl_keys_and_the_files_folder(tmp_path: Path) -> None:
    s = settings_from_properties(
        {"aclEnable": "true", "rocketmqHome": "rmq-home"}, base_dir=tmp_path
    )
    assert s.acl_enable is True
    assert s.rocketmq_home == tmp_path / "rmq-home"  # relative: from the file's folder
    assert s.config_dir == tmp_path
    assert settings_from_properties({}).config_dir is None


@pytest.mark.parametrize(
    ("props", "needle"),
    [
        ({"listenPort": "ninety"}, "listenPort='ninety'"),
        ({"listenPort": "70000"}, "listenPort='70000'"),
        ({"brokerRole": "LEADER"}, "SYNC_MASTER"),
        ({"flushDiskType": "FAST"}, "flushDiskType='FAST'"),
        ({"deleteWhen": "25"}, "deleteWhen"),
        ({"namesrvAddr": "nohost"}, "namesrvAddr"),
        ({"diskMaxUsedSpaceRatio": "99"}, "diskMaxUsedSpaceRatio='99'"),
    ],
)
def test_bad_values_name_key_value_and_rule(props: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigurationError) as err:
        settings_from_properties(props)
    assert needle in str(err.value)


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conf = tmp_path / "b.properties"
    conf.write_text("listenPort=10911\nflushDiskType=ASYNC_FLUSH\nbrokerName=from-file\n")
    monkeypatch.setenv("RMQKIT_LISTEN_PORT", "10999")
    monkeypatch.setenv("RMQKIT_STORE__FLUSH_DISK_TYPE", "SYNC_FLUSH")
    s = load_broker_settings(conf)
    assert (s.listen_port, s.store.flush_disk_type, s.broker_name) == (
        10999,
        "SYNC_FLUSH",
        "from-file",
    )
