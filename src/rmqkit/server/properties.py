"""Reading RocketMQ's broker.properties files into `BrokerSettings`.

The file format is Java's `Properties`: `key=value`, `key: value` or `key value`, `#`/`!` comments,
backslash line continuations and escapes. Every key RocketMQ's example configs use is known; a key
rmqkit does not know is reported by name with a warning; a bad value stops start-up with a message
naming the key, the value and what is allowed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from rmqkit.common.java_properties import parse_properties
from rmqkit.errors import ConfigurationError
from rmqkit.server.settings import BrokerSettings, broker_keys

log = logging.getLogger("rmqkit.settings")

__all__ = ["load_broker_settings", "parse_properties", "settings_from_properties"]

ALIASES = {
    "mapedFileSizeCommitLog": "mappedFileSizeCommitLog",
    "mapedFileSizeConsumeQueue": "mappedFileSizeConsumeQueue",
}
"""RocketMQ 4.x spelled these with one 'p'; both are accepted."""

NOT_YET_APPLIED = frozenset(
    {
        "enableDLegerCommitLog", "brokerTopicEnable",
        "clusterTopicEnable", "useReentrantLockWhenPutMessage", "waitTimeMillsInSendQueue",
        "transientStorePoolEnable",
        "enableAcl", "duplicationEnable", "storeType",
        "enableControllerMode", "fetchNamesrvAddrByAddressServer",
        "enableCalcFilterBitMap", "useServerSideResetOffset",
    }
)  # fmt: skip
"""Keys RocketMQ knows whose features rmqkit has not built yet: accepted, with a warning."""


def settings_from_properties(
    props: dict[str, str],
    *,
    base_dir: Path | None = None,
    warn: Callable[[str], None] = log.warning,
) -> BrokerSettings:
    """Typed settings from properties; unknown keys warned about, bad values refused.

    Args:
        props: key -> value, as in a broker.properties file.
        base_dir: relative store paths are taken from here (the config file's folder).
        warn: where the warnings go.

    Raises:
        ConfigurationError: naming every bad key, its value and what is allowed.
    """
    keys = broker_keys()
    data: dict[str, Any] = {}
    store: dict[str, Any] = {}
    where: dict[tuple[str, ...], tuple[str, str]] = {}
    for raw_key, value in props.items():
        if raw_key.startswith("tls."):
            continue  # read by rmqkit.remoting.tls_config.load_tls
        key = ALIASES.get(raw_key, raw_key)
        target = keys.get(key)
        if target is None:
            if key in NOT_YET_APPLIED:
                warn(f"{raw_key}: known to RocketMQ, not applied by rmqkit yet; ignored")
            else:
                warn(f"{raw_key}: unknown broker.properties key; ignored")
            continue
        nested, field = target
        if nested == "store":
            if field.startswith("store_path") or field in ("store_checkpoint", "abort_file"):
                value = str(_resolve(value, base_dir))
            store[field] = value
            where[("store", field)] = (raw_key, value)
        else:
            if field == "rocketmq_home":
                value = str(_resolve(value, base_dir))
            data[field] = value
            where[(field,)] = (raw_key, value)
    if store:
        data["store"] = store
    if base_dir is not None:
        data["config_dir"] = base_dir
    try:
        return BrokerSettings(**data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(str(p) for p in err["loc"])
            msg = str(err["msg"]).removeprefix("Value error, ")
            if loc not in where and (not loc or loc == ("store",)):
                problems.append(msg)  # a rule across keys: the message names them
                continue
            raw_key, value = where.get(loc, (".".join(loc), "?"))
            problems.append(f"{raw_key}={value!r}: {msg}")
        raise ConfigurationError("bad broker settings:\n  " + "\n  ".join(problems)) from None
    except ConfigurationError as exc:
        raise ConfigurationError(f"bad broker settings: {exc}") from None


def _resolve(value: str, base_dir: Path | None) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() or base_dir is None else base_dir / p


def load_broker_settings(path: Path | None, **overrides: Any) -> BrokerSettings:
    """Settings from a broker.properties file (or defaults), then the environment."""
    props = parse_properties(path.read_text(encoding="utf-8")) if path is not None else {}
    settings = settings_from_properties(props, base_dir=path.parent if path else None)
    if path is not None:
        overrides = {"config_file": path.resolve(), **overrides}
    return settings.model_copy(update=overrides) if overrides else settings
