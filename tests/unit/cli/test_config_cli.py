"""`rmqkit config explain`: the starter's effective settings as a table."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from rmqkit.cli.main import cli


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in list(os.environ):
        if name.upper().startswith("ROCKETMQ_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_explain_defaults_and_environment() -> None:
    result = CliRunner().invoke(
        cli, ["config", "explain"], env={"ROCKETMQ_PRODUCER__GROUP": "orders-producer"}
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["KEY", "VALUE", "SOURCE"]
    assert ["rocketmq.producer.group", "orders-producer", "env"] in [ln.split() for ln in lines]
    assert ["rocketmq.name-server", "-", "default"] in [ln.split() for ln in lines]


def test_explain_file_masks_secrets(clean_env: Path) -> None:
    path = clean_env / "application.properties"
    path.write_text(
        "rocketmq.name-server=127.0.0.1:9876\nrocketmq.consumer.access-key=app-key-1\n"
        "rocketmq.consumer.secret-key=s3cret\n"
        "rocketmq.consumer.listeners.G.T=false\n",
        encoding="utf-8",
    )
    result = CliRunner().invoke(cli, ["config", "explain", "--file", str(path)])
    assert result.exit_code == 0, result.output
    rows = [ln.split() for ln in result.output.splitlines()]
    assert ["rocketmq.name-server", "127.0.0.1:9876", "file"] in rows
    assert ["rocketmq.consumer.secret-key", "******", "file"] in rows
    assert ["rocketmq.consumer.listeners.G.T.enabled", "false", "file"] in rows
    assert "s3cret" not in result.output


def test_explain_bad_value_is_a_clean_error(clean_env: Path) -> None:
    path = clean_env / "app.toml"
    path.write_text('[rocketmq]\naccess-channel = "LAN"\n', encoding="utf-8")
    result = CliRunner().invoke(cli, ["config", "explain", "-f", str(path)])
    assert result.exit_code == 1
    assert "rocketmq.access-channel='LAN'" in result.output
    assert "Traceback" not in result.output
