"""RocketMQ's `tls.*` keys, read into `TlsSettings` (a `ServerTls` and, with `tls.enable`, a
`ClientTls`).

Java reads them from JVM system properties (`-Dtls.server.mode=enforcing`) and from the file
`tls.config.file` names (default `/etc/rocketmq/tls.properties`). rmqkit reads, highest
precedence first:

1. environment variables: `RMQKIT_` and the key in capitals, dots and camel humps as `_`
   (`tls.server.keyPath` is `RMQKIT_TLS_SERVER_KEY_PATH`);
2. `tls.*` keys in the configuration the caller passes (a broker.properties file);
3. the tls.properties file: the one given, else `RMQKIT_TLS_CONFIG_FILE`, else `tls.config.file`
   in that configuration, else `/etc/rocketmq/tls.properties` when it exists. Unlike Java, the
   file may also hold `tls.server.mode` and `tls.enable`.

`tls.test.mode.enable` (true by default, as in RocketMQ) means: the server shows a self-signed
certificate even when one is configured, and the client verifies nothing. Both are warned about
when the keys say otherwise.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rmqkit.common.java_properties import parse_properties
from rmqkit.errors import ConfigurationError
from rmqkit.remoting.tls import ClientTls, ServerTls, TlsMode

log = logging.getLogger("rmqkit.remoting.tls")

DEFAULT_CONFIG_FILE = Path("/etc/rocketmq/tls.properties")
CONFIG_FILE_KEY = "tls.config.file"
_BOOL = {"true": True, "false": False}
_CLIENT_AUTH = ("none", "optional", "require")


def _bool(v: str) -> bool:
    try:
        return _BOOL[v.strip().lower()]
    except KeyError:
        raise ValueError("allowed: true, false") from None


def _mode(v: str) -> TlsMode:
    try:
        return TlsMode(v.strip().lower())
    except ValueError:
        raise ValueError("allowed: " + ", ".join(m.value for m in TlsMode)) from None


def _client_auth(v: str) -> str:
    if v.strip().lower() not in _CLIENT_AUTH:
        raise ValueError("allowed: " + ", ".join(_CLIENT_AUTH))
    return v.strip().lower()


KEYS: dict[str, Callable[[str], Any]] = {
    "tls.server.mode": _mode,
    "tls.enable": _bool,
    "tls.test.mode.enable": _bool,
    "tls.server.need.client.auth": _client_auth,
    "tls.server.keyPath": Path,
    "tls.server.keyPassword": str,
    "tls.server.certPath": Path,
    "tls.server.authClient": _bool,
    "tls.server.trustCertPath": Path,
    "tls.client.keyPath": Path,
    "tls.client.keyPassword": str,
    "tls.client.certPath": Path,
    "tls.client.authServer": _bool,
    "tls.client.trustCertPath": Path,
    "tls.client.checkHostname": _bool,
}
"""Every key read, and how its value is read. `tls.client.checkHostname` is rmqkit's own."""
_PATHS = {k for k, f in KEYS.items() if f is Path}


def env_name(key: str) -> str:
    """`tls.server.keyPath` -> `RMQKIT_TLS_SERVER_KEY_PATH`."""
    snake = re.sub(r"([a-z])([A-Z])", r"\1_\2", key).replace(".", "_")
    return "RMQKIT_" + snake.upper()


@dataclass(frozen=True)
class TlsSettings:
    """What a server accepts and shows, and how its own outgoing connections (a broker's to
    NameServers and to its master) are made: `client` is None unless `tls.enable=true`."""

    server: ServerTls = field(default_factory=ServerTls)
    client: ClientTls | None = None


def load_tls(
    props: Mapping[str, str] | None = None,
    *,
    base_dir: Path | None = None,
    config_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
    warn: Callable[[str], None] = log.warning,
) -> TlsSettings:
    """TLS settings from the environment, `props` and a tls.properties file (see the module).

    Args:
        props: a configuration's keys (only `tls.*` ones are read); relative paths in it are
            taken from `base_dir`.
        config_file: the tls.properties file to read, before the other ways of naming one.
        environ: the environment (default `os.environ`).
        warn: where warnings go (unknown `tls.*` keys, test-mode surprises).

    Raises:
        ConfigurationError: a named file cannot be read, or a value is bad (every bad key is
            named with its value, where it came from and what is allowed).
    """
    env = os.environ if environ is None else environ
    props = props or {}
    file = config_file or _named_file(env, props, base_dir)
    raw: dict[str, tuple[str, str, Path | None]] = {}  # key -> (value, where, base dir)
    if file is not None:
        for key, value in _read_file(file, config_file is not None or file != DEFAULT_CONFIG_FILE):
            raw[key] = (value, str(file), file.parent)
    for key, value in props.items():
        if key.startswith("tls.") and key != CONFIG_FILE_KEY:
            raw[key] = (value, "the configuration", base_dir)
    for key in KEYS:
        if env_name(key) in env:
            raw[key] = (env[env_name(key)], env_name(key), None)
    values: dict[str, Any] = {}
    problems: list[str] = []
    for key, (value, where, base) in raw.items():
        reader = KEYS.get(key)
        if reader is None:
            warn(f"{key} ({where}): unknown TLS key; ignored")
            continue
        try:
            parsed = reader(value)
        except ValueError as exc:
            problems.append(f"{key}={value!r} ({where}): {exc}")
            continue
        if key in _PATHS and base is not None and not parsed.is_absolute():
            parsed = base / parsed
        values[key] = parsed
    if problems:
        raise ConfigurationError("bad TLS settings:\n  " + "\n  ".join(problems))
    return _settings(values, warn)


def _named_file(env: Mapping[str, str], props: Mapping[str, str], base: Path | None) -> Path | None:
    named = env.get(env_name(CONFIG_FILE_KEY)) or props.get(CONFIG_FILE_KEY)
    if named:
        path = Path(named).expanduser()
        return path if path.is_absolute() or base is None else base / path
    return DEFAULT_CONFIG_FILE if DEFAULT_CONFIG_FILE.is_file() else None


def _read_file(path: Path, required: bool) -> list[tuple[str, str]]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        if required:
            raise ConfigurationError(f"cannot read TLS settings from {path}: {exc}") from None
        return []
    return list(parse_properties(text).items())


def _settings(v: dict[str, Any], warn: Callable[[str], None]) -> TlsSettings:
    test_mode = v.get("tls.test.mode.enable", True)
    cert, key = v.get("tls.server.certPath"), v.get("tls.server.keyPath")
    if test_mode and (cert or key):
        warn(
            "tls.server.certPath/keyPath are not used while tls.test.mode.enable=true: the "
            "server shows a self-signed certificate; set tls.test.mode.enable=false"
        )
        cert = key = None
    elif not test_mode and not cert and v.get("tls.server.mode") is not TlsMode.DISABLED:
        warn("tls.test.mode.enable=false and no tls.server.certPath: self-signed certificate")
    if cert and not key:
        raise ConfigurationError(f"tls.server.certPath={str(cert)!r} needs tls.server.keyPath")
    client_auth = v.get("tls.server.need.client.auth", "none")
    if client_auth != "none" and not v.get("tls.server.authClient", False):
        warn(
            f"tls.server.need.client.auth={client_auth}: rmqkit verifies every client "
            "certificate it asks for, against tls.server.trustCertPath (tls.server.authClient"
            "=false, accepting any certificate, is not supported)"
        )
    server = ServerTls(
        mode=v.get("tls.server.mode", TlsMode.PERMISSIVE),
        cert_path=cert,
        key_path=key,
        key_password=v.get("tls.server.keyPassword"),
        client_auth=client_auth,
        trust_cert_path=v.get("tls.server.trustCertPath"),
    )
    if not v.get("tls.enable", False):
        return TlsSettings(server, None)
    auth_server = v.get("tls.client.authServer", False)
    if auth_server and test_mode:
        warn(
            "tls.client.authServer=true is not applied while tls.test.mode.enable=true: the "
            "server's certificate is not verified; set tls.test.mode.enable=false"
        )
    client = ClientTls(
        verify=auth_server and not test_mode,
        trust_cert_path=v.get("tls.client.trustCertPath"),
        check_hostname=v.get("tls.client.checkHostname", False),
        cert_path=v.get("tls.client.certPath"),
        key_path=v.get("tls.client.keyPath"),
        key_password=v.get("tls.client.keyPassword"),
    )
    return TlsSettings(server, client)
