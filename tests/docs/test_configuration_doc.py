"""docs/configuration.md agrees with the settings models: the broker table is what
`tools/broker_settings_doc.py` generates from `BrokerSettings` and `StoreSettings`, every key
`rmqkit serve` reads is in it, and the keys accepted but not applied are listed as such."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest

from rmqkit.server.properties import NOT_YET_APPLIED
from rmqkit.server.settings import broker_keys
from tests.docs.blocks import REPO

DOC = REPO / "docs" / "configuration.md"


def _tool() -> ModuleType:
    path = REPO / "tools" / "broker_settings_doc.py"
    spec = importlib.util.spec_from_file_location("broker_settings_doc", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tool() -> ModuleType:
    return _tool()


def test_the_broker_table_is_what_the_models_generate(tool: ModuleType) -> None:
    current = tool.generated_part(DOC.read_text(encoding="utf-8"))
    assert current == tool.render(), (
        "docs/configuration.md is stale: run .venv/bin/python tools/broker_settings_doc.py --write"
    )


def test_every_key_rmqkit_reads_has_a_row_with_its_env_var(tool: ModuleType) -> None:
    part = tool.generated_part(DOC.read_text(encoding="utf-8"))
    rows = {m[1]: m[2] for m in re.finditer(r"^\| `(\w+)` \| `(RMQKIT_\w+)` \|", part, re.M)}
    assert set(rows) == set(broker_keys())
    for key, (nested, field) in broker_keys().items():
        prefix = "RMQKIT_STORE__" if nested == "store" else "RMQKIT_"
        assert rows[key] == prefix + field.upper()


def test_keys_not_applied_yet_are_listed_apart(tool: ModuleType) -> None:
    part = tool.generated_part(DOC.read_text(encoding="utf-8"))
    listed = part[part.index("Accepted but not applied yet") :]
    assert set(re.findall(r"`(\w+)`", listed)) >= set(NOT_YET_APPLIED)
    assert not set(broker_keys()) & NOT_YET_APPLIED


def test_hand_written_notes_name_real_keys(tool: ModuleType) -> None:
    assert set(tool.ALLOWED) | set(tool.NOTES) <= set(broker_keys())


def test_check_mode_fails_on_a_stale_document(tool: ModuleType, tmp_path: Path) -> None:
    stale = tmp_path / "configuration.md"
    stale.write_text(DOC.read_text(encoding="utf-8").replace("`DefaultCluster`", "`Other`", 1))
    assert tool.main(["--check", "--doc", str(stale)]) == 1
    assert tool.main(["--write", "--doc", str(stale)]) == 0
    assert tool.main(["--check", "--doc", str(stale)]) == 0
    assert stale.read_text(encoding="utf-8") == DOC.read_text(encoding="utf-8")


def test_the_starter_part_is_kept_below_the_broker_part() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert text.index("## Broker settings") < text.index("## Starter settings (rocketmq.*)")
