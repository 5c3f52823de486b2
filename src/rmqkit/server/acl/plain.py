"""plain_acl.yml: accounts and white lists, read from RocketMQ's own files and re-read on change.

The files (RocketMQ 4.9.3+ layout) are `plain_acl.yml` and every `*.yml` / `*.yaml` under `acl/`
in one folder: `<rocketmqHome>/conf`, or the broker.properties file's folder when no
`rocketmqHome` (nor `ROCKETMQ_HOME`) is set. A file looks like:

    globalWhiteRemoteAddresses:      # these clients need no key at all
      - 10.10.103.*
    accounts:
      - accessKey: RocketMQ          # longer than 6 characters, as the secret
        secretKey: 12345678
        whiteRemoteAddress:          # from here the key is enough, no signature check
        admin: false                 # admins may create/delete topics and groups, and pass
        defaultTopicPerm: DENY       #   every permission check
        defaultGroupPerm: SUB        # for topics / groups not listed below (default DENY)
        topicPerms: [topicA=DENY, topicB=PUB|SUB, topicC=SUB]
        groupPerms: [groupA=DENY, groupB=PUB|SUB, groupC=SUB]

An access key defined in two files is taken from the first (files in name order, plain_acl.yml
first); the white lists of all files add up. A file that cannot be read stops start-up; on a
re-read, the old accounts stay in force and the error is logged.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rmqkit.common.names import retry_topic
from rmqkit.errors import ConfigurationError
from rmqkit.server.acl.addresses import AddressMatcher, AddressPatternError, address_matcher
from rmqkit.server.acl.permission import DENY, is_known_perm, parse_perm

log = logging.getLogger("rmqkit.acl")

MIN_KEY_LENGTH = 7
"""RocketMQ refuses access and secret keys of 6 characters or fewer."""


@dataclass(slots=True)
class Account:
    """One entry of `accounts`."""

    access_key: str
    secret_key: str = field(repr=False)
    white: AddressMatcher = lambda ip: False
    admin: bool = False
    default_topic_perm: int = DENY
    default_group_perm: int = DENY
    perms: dict[str, int] = field(default_factory=dict)
    """Topic or `%RETRY%<group>` -> owned bits."""


@dataclass(slots=True)
class AclConfig:
    """Everything the files say: the global white list and the accounts by access key."""

    global_white: list[AddressMatcher] = field(default_factory=list)
    accounts: dict[str, Account] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)

    def white_listed(self, ip: str) -> bool:
        return any(match(ip) for match in self.global_white)


def acl_folder(rocketmq_home: Path | None, config_dir: Path | None) -> Path:
    """Where the ACL files are: `<home>/conf`, else the properties file's folder, else '.'."""
    if rocketmq_home is not None:
        return rocketmq_home / "conf"
    return config_dir if config_dir is not None else Path(".")


def acl_files(folder: Path) -> list[Path]:
    """`plain_acl.yml` (if present), then `acl/**/*.yml|yaml` in name order."""
    found = [folder / "plain_acl.yml"] if (folder / "plain_acl.yml").is_file() else []
    sub = folder / "acl"
    if sub.is_dir():
        found += sorted(p for p in sub.rglob("*") if p.suffix in (".yml", ".yaml") and p.is_file())
    return found


def _perm(value: Any, where: str) -> int:
    text = "" if value is None else str(value)
    if text and not is_known_perm(text):
        log.warning("%s: %r is not PUB, SUB, PUB|SUB or DENY; read as DENY", where, text)
    return parse_perm(text)


def _resource_perms(entries: Any, group: bool, where: str) -> dict[str, int]:
    if entries is None:
        return {}
    if not isinstance(entries, list):
        raise ConfigurationError(f"{where}: expected a list of 'name=PERM', not {entries!r}")
    out: dict[str, int] = {}
    for entry in entries:
        parts = str(entry).split("=")
        if len(parts) != 2 or not parts[0].strip():
            kind = "group" if group else "topic"
            raise ConfigurationError(f"{where}: {entry!r} is not '<{kind}>=PERM'")
        name = parts[0].strip()
        out[retry_topic(name) if group else name] = _perm(parts[1], f"{where} {entry!r}")
    return out


def _matcher(pattern: Any, where: str) -> AddressMatcher:
    try:
        return address_matcher(None if pattern is None else str(pattern))
    except AddressPatternError as exc:
        raise ConfigurationError(f"{where}: {exc}") from None


def _account(raw: Any, where: str) -> Account:
    if not isinstance(raw, dict):
        raise ConfigurationError(f"{where}: an account is a mapping, not {raw!r}")
    ak, sk = raw.get("accessKey"), raw.get("secretKey")
    if ak is None or sk is None or len(str(ak)) < MIN_KEY_LENGTH or len(str(sk)) < MIN_KEY_LENGTH:
        raise ConfigurationError(
            f"{where}: accessKey and secretKey must both be set and longer than"
            f" {MIN_KEY_LENGTH - 1} characters (accessKey={ak!r})"
        )
    where = f"{where} (accessKey {ak})"
    perms = _resource_perms(raw.get("topicPerms"), False, f"{where} topicPerms")
    perms.update(_resource_perms(raw.get("groupPerms"), True, f"{where} groupPerms"))
    return Account(
        access_key=str(ak),
        secret_key=str(sk),
        white=_matcher(raw.get("whiteRemoteAddress"), f"{where} whiteRemoteAddress"),
        admin=raw.get("admin") is True or str(raw.get("admin")).lower() == "true",
        default_topic_perm=_perm(raw.get("defaultTopicPerm"), f"{where} defaultTopicPerm"),
        default_group_perm=_perm(raw.get("defaultGroupPerm"), f"{where} defaultGroupPerm"),
        perms=perms,
    )


def load_acl(files: Iterable[Path]) -> AclConfig:
    """Read the files into one `AclConfig`.

    Raises:
        ConfigurationError: a file that is not YAML, or an entry that is not what RocketMQ
            accepts; the message names the file and the entry.
    """
    config = AclConfig()
    for path in files:
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise ConfigurationError(f"cannot read ACL file {path}: {exc}") from None
        config.files.append(path)
        if data is None:
            continue  # an empty file adds nothing
        if not isinstance(data, dict):
            raise ConfigurationError(f"ACL file {path}: expected a mapping at the top")
        for key in ("globalWhiteRemoteAddresses", "accounts"):
            if not isinstance(data.get(key) or [], list):
                raise ConfigurationError(f"ACL file {path}: {key} must be a list")
        for i, pattern in enumerate(data.get("globalWhiteRemoteAddresses") or []):
            config.global_white.append(_matcher(pattern, f"{path} globalWhiteRemoteAddresses[{i}]"))
        for i, raw in enumerate(data.get("accounts") or []):
            account = _account(raw, f"{path} accounts[{i}]")
            if account.access_key in config.accounts:
                log.warning("%s: accessKey %s is defined in an earlier file too; that one counts",
                            path, account.access_key)  # fmt: skip
                continue
            config.accounts[account.access_key] = account
    return config


class AclFiles:
    """The ACL files of one folder, re-read when one changes, appears or goes."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._stamp = self._stamps()
        files = list(self._stamp)
        if not files:
            raise ConfigurationError(
                f"aclEnable=true but there is no {folder / 'plain_acl.yml'} (nor any"
                f" {folder / 'acl'}/*.yml): create one, or set rocketmqHome to the RocketMQ home"
                " whose conf/ holds it"
            )
        self.config = load_acl(files)
        log.info("ACL: %d accounts, %d white-list entries from %s", len(self.config.accounts),
                 len(self.config.global_white), ", ".join(map(str, files)))  # fmt: skip

    def _stamps(self) -> dict[Path, tuple[int, int]]:
        out = {}
        for p in acl_files(self.folder):
            try:
                st = p.stat()
            except OSError:
                continue
            out[p] = (st.st_mtime_ns, st.st_size)
        return out

    def reload_if_changed(self) -> bool:
        """Re-read the files if any changed; True when the new accounts are in force."""
        stamp = self._stamps()
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        if not stamp:
            log.error("every ACL file in %s is gone; the previous accounts stay", self.folder)
            return False
        try:
            self.config = load_acl(list(stamp))
        except ConfigurationError as exc:
            log.error("ACL files changed but cannot be read; the previous accounts stay: %s", exc)
            return False
        log.info("ACL files re-read: %d accounts", len(self.config.accounts))
        return True
