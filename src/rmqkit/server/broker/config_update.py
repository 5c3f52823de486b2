"""UPDATE_BROKER_CONFIG: broker.properties keys changed while the broker runs (`mqadmin
updateBrokerConfig -k brokerPermission -v 4`, the usual first step of taking a broker out).

The request's body is properties text, `key=value` lines. Every key is checked as start-up
checks it, against the settings the broker runs with: a key rmqkit does not know, or a value
its key does not take, refuses the whole request, naming it, and nothing changes. Then:

- `LIVE` keys take effect at once. A new `brokerPermission` also goes to every NameServer at
  once, with each topic's permission masked by it (as Java's broker registers), so producers
  stop choosing a broker that no longer takes writes, and consumers one that no longer serves
  reads.
- Every key is written into the properties file the broker was started with (`--config`), in
  place: the key's line is replaced, or a line added; comments and the other lines stay. Keys
  that are not `LIVE` (the store's, the ports, the broker's name ...) apply at the next start;
  the answer's remark says which.

A broker started without a properties file has nowhere to keep a key: it applies `LIVE` keys
(the remark says they last until it stops) and refuses the others.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from rmqkit.common.java_properties import update_properties_text
from rmqkit.errors import ConfigurationError
from rmqkit.server.properties import ALIASES, NOT_YET_APPLIED, settings_from_properties
from rmqkit.server.settings import BrokerSettings, broker_keys, broker_properties

if TYPE_CHECKING:
    from rmqkit.server.broker.broker import Broker

log = logging.getLogger("rmqkit.broker")

LIVE = {
    "brokerPermission": "broker_permission",
    "autoCreateTopicEnable": "auto_create_topic_enable",
    "autoCreateSubscriptionGroup": "auto_create_subscription_group",
    "defaultTopicQueueNums": "default_topic_queue_nums",
}
"""Keys a running broker applies at once (broker.properties key -> settings field)."""


@dataclasses.dataclass(slots=True)
class ConfigChange:
    """What an update did: keys applied at once, keys kept for the next start, and where."""

    updates: dict[str, str]
    """The keys set (old spellings made new) and their values."""
    live: list[str]
    later: list[str]
    kept_in: Path | None

    def remark(self) -> str:
        parts = []
        if self.live:
            parts.append(f"applied now: {', '.join(self.live)}")
        if self.later:
            parts.append(f"applied at the next start: {', '.join(self.later)}")
        if self.kept_in is not None:
            parts.append(f"written to {self.kept_in}")
        elif self.live:
            parts.append("not kept: the broker has no properties file (started without --config)")
        return "; ".join(parts) or "nothing to update"


def check_update(
    settings: BrokerSettings, props: dict[str, str]
) -> tuple[BrokerSettings, ConfigChange]:
    """The settings to run with after `props` (the `LIVE` keys changed) and what changes.

    Raises:
        ConfigurationError: a key unknown, a value refused (named as at start-up), or, without
        a properties file, a key only a start applies.
    """
    keys = broker_keys()
    changes = {ALIASES.get(raw, raw): value for raw, value in props.items()}
    refused = sorted(k for k in changes if k not in keys)
    if refused:
        pending = [k for k in refused if k in NOT_YET_APPLIED]
        unknown = [k for k in refused if k not in NOT_YET_APPLIED]
        raise ConfigurationError("; ".join(
            ([f"unknown broker.properties key: {', '.join(unknown)}"] if unknown else [])
            + ([f"known to RocketMQ, not applied by rmqkit yet: {', '.join(pending)}"]
               if pending else [])
        ))  # fmt: skip
    checked = settings_from_properties(
        {**broker_properties(settings), **changes}, base_dir=settings.config_dir
    )  # raises ConfigurationError, naming each bad key and value; every key is known here
    live = [k for k in changes if k in LIVE]
    later = [k for k in changes if k not in LIVE]
    if later and settings.config_file is None:
        raise ConfigurationError(
            f"{', '.join(later)}: applied only at start-up, and this broker has no properties "
            "file to keep them in (it was started without --config)"
        )
    running = settings.model_copy(update={LIVE[k]: getattr(checked, LIVE[k]) for k in live})
    return running, ConfigChange(changes, live, later, settings.config_file)


class ConfigUpdater:
    """Applies updates one at a time (a second waits for the first's file write)."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self._lock = asyncio.Lock()

    async def update(self, props: dict[str, str]) -> ConfigChange:
        """Check `props`, apply the `LIVE` keys, keep them all; raises ConfigurationError
        (nothing changed) or OSError (the file could not be written: nothing applied)."""
        async with self._lock:
            b = self.broker
            running, change = check_update(b.settings, props)
            if change.kept_in is not None:
                await asyncio.to_thread(write_properties, change.kept_in, change.updates)
            before = b.settings.broker_permission
            b.apply_settings(running)
            log.warning("broker configuration updated: %s", change.remark())
            if running.broker_permission != before:
                b.topics.data_version.next_version()
                await b.registration.register_now()
            return change


def write_properties(path: Path, updates: dict[str, str]) -> None:
    """Set `updates` in the properties file at `path`, replacing it whole once the new text
    is on the disk (a crash leaves the old file or the new one)."""
    text = path.read_text(encoding="utf-8")
    new = update_properties_text(text, updates, lambda k: ALIASES.get(k, k))
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(new)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, path.stat().st_mode & 0o7777)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
