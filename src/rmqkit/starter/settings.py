"""The starter's settings: Spring's `rocketmq.*` properties as one typed pydantic-settings model.

`RocketSettings` mirrors rocketmq-spring-boot-starter's `RocketMQProperties` (`rocketmq.producer.*`,
`rocketmq.consumer.listeners.<group>.<topic>`, ...) plus rmqkit's embedded broker and idempotency
store. Precedence: init kwargs > environment (`ROCKETMQ_PRODUCER__GROUP`) > `.env` > file > default.
"""

from __future__ import annotations

import contextvars
import difflib
import functools
import logging
import os
import re
import tomllib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from dotenv import dotenv_values
from pydantic import (
    BaseModel,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from rmqkit.common.java_properties import parse_properties
from rmqkit.errors import ConfigurationError
from rmqkit.starter.sections import (
    ConsumerSettings,
    EmbeddedSettings,
    IdempotencySettings,
    ListenerOverride,
    ProducerSettings,
    TlsClientSettings,
    check_name_server,
    upper_choice,
)

log = logging.getLogger("rmqkit.starter.settings")

Source = Literal["default", "env", "file", "init"]
"""Where `explain()` says a value came from (a `.env` file counts as "env")."""

ENV_PREFIX = "ROCKETMQ_"
_MASK = "******"
_URL_PASSWORD_RE = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@]*:)[^@/]*(?=@)")
_UNSUPPORTED = {
    "namespacev2": "use namespace",
    "pullconsumer": "rmqkit has no pull-consumer template",
}
"""Spring starter keys rmqkit knows but does not apply (canonical spelling -> why)."""


# --- key spellings: Spring kebab-case, camelCase, snake_case and env names map to one field ---


def _canon(key: str) -> str:
    """Spring's relaxed binding: `sendMessageTimeout` = `send-message-timeout` = `SEND_MESSAGE_.`"""
    return key.replace("-", "").replace("_", "").lower()


def _extra(model: type[BaseModel], name: str) -> dict[str, Any]:
    extra = model.model_fields[name].json_schema_extra
    return extra if isinstance(extra, dict) else {}


def spring_key(model: type[BaseModel], name: str) -> str:
    """The Spring-style (kebab-case) key of one field: `send_message_timeout_ms` ->
    `send-message-timeout`."""
    return str(_extra(model, name).get("spring_key") or name.replace("_", "-"))


@functools.cache
def _key_table(model: type[BaseModel]) -> dict[str, str]:
    table: dict[str, str] = {}
    for name in model.model_fields:
        for alias in (name, spring_key(model, name), *_extra(model, name).get("aliases", ())):
            table[_canon(str(alias))] = name
    return table


def _sub_model(model: type[BaseModel], name: str) -> type[BaseModel] | None:
    annotation = model.model_fields[name].annotation
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _is_listeners(model: type[BaseModel] | None, name: str) -> bool:
    return model is ConsumerSettings and name == "listeners"


def spring_path(path: Sequence[str]) -> str:
    """`("producer", "send_message_timeout_ms")` -> `rocketmq.producer.send-message-timeout`."""
    out, model, i = ["rocketmq"], RocketSettings, 0
    current: type[BaseModel] | None = model
    while i < len(path):
        name = path[i]
        if current is None or name not in current.model_fields:
            out.append(name.replace("_", "-"))
            current, i = None, i + 1
            continue
        out.append(spring_key(current, name))
        if _is_listeners(current, name):
            out.extend(path[i + 1 : i + 3])
            current, i = ListenerOverride, i + 3
            continue
        current, i = _sub_model(current, name), i + 1
    return ".".join(out)


def env_name(path: Sequence[str]) -> str:
    """`("consumer", "listeners", "g1", "orders")` -> `ROCKETMQ_CONSUMER__LISTENERS__g1__orders`."""
    keep_case = tuple(path[:2]) == ("consumer", "listeners")
    parts = [p if keep_case and i in (2, 3) else p.upper() for i, p in enumerate(path)]
    return ENV_PREFIX + "__".join(parts)


Warn = Callable[[str], None]
Render = Callable[[tuple[str, ...]], str]
"""Spells a key path for a warning: `rocketmq.a.b in app.toml`, `ROCKETMQ_A__B (environment)`."""


def _normalize(
    model: type[BaseModel],
    raw: Mapping[str, Any],
    path: tuple[str, ...],
    render: Render,
    warn: Warn,
) -> dict[str, Any]:
    """Raw keys (any spelling) -> field names, recursively; unknown keys warned about and dropped.

    `path` holds the keys as the user wrote them, so warnings quote the user's spelling.
    """
    out: dict[str, Any] = {}
    table = _key_table(model)
    for key, value in raw.items():
        name = table.get(_canon(str(key)))
        where = (*path, str(key))
        if name is None:
            _warn_unknown(model, where, render, warn)
            continue
        sub = _sub_model(model, name)
        if sub is not None and isinstance(value, Mapping):
            value = _normalize(sub, value, where, render, warn)
        elif _is_listeners(model, name) and isinstance(value, Mapping):
            value = _normalize_listeners(value, where, render, warn)
        out[name] = value
    return out


def _normalize_listeners(
    raw: Mapping[str, Any], path: tuple[str, ...], render: Render, warn: Warn
) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for group, topics in raw.items():
        if not isinstance(topics, Mapping):
            warn(f"{render((*path, group))}: expected <group>.<topic>=true|false; ignored")
            continue
        for topic, value in topics.items():
            where = (*path, group, topic)
            out.setdefault(group, {})[topic] = (
                _normalize(ListenerOverride, value, where, render, warn)
                if isinstance(value, Mapping) else {"enabled": value}
            )  # fmt: skip
    return out


def _warn_unknown(
    model: type[BaseModel], where: tuple[str, ...], render: Render, warn: Warn
) -> None:
    reason = _UNSUPPORTED.get(_canon(where[-1]))
    if reason is not None:
        warn(f"{render(where)}: a Spring starter key rmqkit does not apply ({reason}); ignored")
        return
    keys = {spring_key(model, n) for n in model.model_fields}
    close = difflib.get_close_matches(where[-1].replace("_", "-").lower(), sorted(keys), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    warn(f"{render(where)}: unknown rocketmq setting{hint}; ignored")


def _provided(state: Any, path: Sequence[str]) -> bool:
    """Whether one source's data sets the leaf at `path` (or a whole model/flag above it)."""
    for name in path:
        if not isinstance(state, Mapping):
            return True
        if name not in state:
            return False
        state = state[name]
    return True


# --- sources: environment, .env and files ---


def _put_listener(
    tree: dict[str, Any], parts: Sequence[str], value: Any, render: Render, warn: Warn
) -> None:
    """`g.t=v` or `g.t.key=v` into `{g: {t: {key: v}}}`; a bare flag is `enabled`."""
    if len(parts) not in (2, 3):
        warn(f"{render(tuple(parts))}: expected <group>.<topic>[.<key>]; ignored")
        return
    entry = tree.setdefault(parts[0], {}).setdefault(parts[1], {})
    entry[parts[2] if len(parts) == 3 else "enabled"] = value


def _env_listeners(source: str, env_file: Any) -> dict[str, Any] | None:
    """ROCKETMQ_CONSUMER__LISTENERS__<group>__<topic>[__<key>], with group and topic case kept.

    pydantic-settings lowercases environment names; RocketMQ group and topic names are not.
    None when no such variable is set.
    """
    env: dict[str, str | None] = {}
    if source == "environment":
        env.update(os.environ)
    elif env_file is not None:
        files = [env_file] if isinstance(env_file, str | os.PathLike) else list(env_file)
        for f in files:
            if Path(f).expanduser().is_file():
                env.update(dotenv_values(Path(f).expanduser()))
    prefix = env_name(("consumer", "listeners")) + "__"
    tree: dict[str, Any] | None = None
    for name, value in env.items():
        if value is not None and name.upper().startswith(prefix):
            tree = {} if tree is None else tree
            parts = name[len(prefix) :].split("__")
            _put_listener(tree, parts, value, _env_listener_name, log.warning)
    return tree


def _dotted(parts: tuple[str, ...]) -> str:
    return ".".join(["rocketmq", "consumer", "listeners", *parts])


def _env_listener_name(parts: tuple[str, ...]) -> str:
    return env_name(("consumer", "listeners", *parts))


def _properties_tree(props: Mapping[str, str], warn: Warn) -> dict[str, Any]:
    """`rocketmq.a.b=v` lines -> `{a: {b: v}}`; keys outside `rocketmq.` are not ours."""
    tree: dict[str, Any] = {}
    for key, value in props.items():
        head, *parts = key.split(".")
        if _canon(head) != "rocketmq" or not parts:
            continue
        if len(parts) > 2 and [_canon(p) for p in parts[:2]] == ["consumer", "listeners"]:
            node = tree.setdefault(parts[0], {}).setdefault(parts[1], {})
            _put_listener(node, parts[2:], value, _dotted, warn)
            continue
        node = tree
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                break
        if not isinstance(node, dict) or isinstance(node.get(parts[-1]), dict):
            warn(f"{key}: conflicts with another rocketmq key; ignored")
            continue
        node[parts[-1]] = value
    return tree


def load_settings_file(path: Path, *, warn: Warn = log.warning) -> dict[str, Any]:
    """A TOML or Java-properties file as field-named data for `RocketSettings`.

    Raises:
        ConfigurationError: the file cannot be read or parsed.
    """
    try:
        text = path.read_text(encoding="utf-8")
        if path.suffix.lower() == ".toml":
            doc = tomllib.loads(text)
            table = next((v for k, v in doc.items() if _canon(k) == "rocketmq"), doc)
            raw = table if isinstance(table, dict) else {}
        else:
            raw = _properties_tree(parse_properties(text), warn)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigurationError(f"cannot read rocketmq settings from {path}: {exc}") from None

    def render(p: tuple[str, ...]) -> str:
        return f"{'.'.join(['rocketmq', *p])} in {path}"

    return _normalize(RocketSettings, raw, (), render, warn)


@dataclass
class _Build:
    """What one `RocketSettings(...)` call read, per source, for `explain()` and error messages."""

    file: Path | None = None
    file_data: dict[str, Any] = field(default_factory=dict)
    states: list[tuple[Source, str, dict[str, Any]]] = field(default_factory=list)


_BUILD: contextvars.ContextVar[_Build | None] = contextvars.ContextVar("_BUILD", default=None)
_PENDING_FILE: contextvars.ContextVar[tuple[Path, dict[str, Any]] | None] = contextvars.ContextVar(
    "_PENDING_FILE", default=None
)


class _EnvSource(PydanticBaseSettingsSource):
    """Wraps pydantic-settings' env / .env source: normalizes keys, warns on unknown ones."""

    def __init__(self, inner: PydanticBaseSettingsSource, where: str, build: _Build) -> None:
        super().__init__(inner.settings_cls)
        self._inner, self._where, self._build = inner, where, build

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._inner.get_field_value(field, field_name)

    def __call__(self) -> dict[str, Any]:
        raw: dict[str, Any] = {}
        for key, value in self._inner().items():
            if key in RocketSettings.model_fields:
                raw[key] = value
            elif key.lower().startswith(ENV_PREFIX.lower()):  # an unknown ROCKETMQ_ key in .env
                raw[key[len(ENV_PREFIX) :]] = value
            # other .env lines belong to the application

        def render(p: tuple[str, ...]) -> str:
            return f"{env_name(p)} ({self._where})"

        # Re-read listener keys with their case (pydantic-settings lowercased them).
        listeners = _env_listeners(self._where, getattr(self._inner, "env_file", None))
        if listeners is not None and isinstance(raw.get("consumer"), dict):
            raw["consumer"] = {k: v for k, v in raw["consumer"].items() if k != "listeners"}
        data = _normalize(RocketSettings, raw, (), render, log.warning)
        if listeners and isinstance(data.setdefault("consumer", {}), dict):
            data["consumer"]["listeners"] = _normalize_listeners(
                listeners, ("consumer", "listeners"), render, log.warning
            )
        self._build.states.append(("env", self._where, data))
        return data


class _FileSource(PydanticBaseSettingsSource):
    """Values from the TOML / properties file given to `RocketSettings.from_file`."""

    def __init__(self, settings_cls: type[BaseSettings], build: _Build) -> None:
        super().__init__(settings_cls)
        self._build = build

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._build.file_data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        if self._build.file is not None:
            self._build.states.append(("file", str(self._build.file), self._build.file_data))
        return self._build.file_data


class RocketSettings(BaseSettings):
    """Everything a service configures about RocketMQ, under Spring's `rocketmq.*` keys.

    Read once at start-up. Precedence, highest first: keyword arguments, environment variables
    (`ROCKETMQ_NAME_SERVER`, `ROCKETMQ_PRODUCER__GROUP`), a `.env` file (in the working directory;
    `_env_file=` picks another, `_env_file=None` none), the file given to `from_file`, defaults.

    Raises:
        ConfigurationError: a bad value; the message names the Spring key, the value, where it
            came from and what is allowed.
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", env_file=".env", extra="forbid",
        frozen=True,
    )  # fmt: skip

    name_server: str | None = Field(
        None, description="NameServers `host:port;host:port`; None: start an embedded broker.",
    )  # fmt: skip
    access_channel: Literal["LOCAL", "CLOUD"] = Field(
        "LOCAL", description="LOCAL (self-hosted) or CLOUD (Alibaba Cloud): with CLOUD,"
        " enable-msg-trace writes to the region's trace topic, rmq_sys_TRACE_DATA_<region>.",
    )  # fmt: skip
    producer: ProducerSettings = Field(
        default_factory=ProducerSettings, description="The template's producer.",
    )  # fmt: skip
    consumer: ConsumerSettings = Field(
        default_factory=ConsumerSettings, description="Listener consumers.",
    )  # fmt: skip
    embedded: EmbeddedSettings = Field(
        default_factory=EmbeddedSettings, description="The embedded broker (no name-server).",
    )  # fmt: skip
    idempotency: IdempotencySettings = Field(
        default_factory=IdempotencySettings, description="The consumed-message store.",
    )  # fmt: skip
    tls: TlsClientSettings = Field(
        default_factory=TlsClientSettings, description="How TLS clients trust the servers.",
    )  # fmt: skip
    tracing_enabled: bool = Field(
        True, description="OpenTelemetry spans and context propagation on send and consume.",
    )  # fmt: skip

    _states: list[tuple[Source, str, dict[str, Any]]] = PrivateAttr(default_factory=list)

    def __init__(self, **values: Any) -> None:
        build = _Build(*(_PENDING_FILE.get() or (None, {})))
        init = {k: v for k, v in values.items() if not k.startswith("_")}
        build.states.append(("init", "keyword argument", init))
        token = _BUILD.set(build)
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise ConfigurationError(_describe(exc, build)) from None
        except SettingsError as exc:  # e.g. ROCKETMQ_PRODUCER='not json'
            raise ConfigurationError(f"bad rocketmq settings: {exc}") from None
        finally:
            _BUILD.reset(token)
        self._states = build.states

    @field_validator("name_server", mode="before")
    @classmethod
    def _addrs(cls, v: Any) -> Any:
        return check_name_server(v)

    @field_validator("access_channel", mode="before")
    @classmethod
    def _choice(cls, v: Any) -> Any:
        return upper_choice(v)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        build = _BUILD.get() or _Build()
        return (
            init_settings,
            _EnvSource(env_settings, "environment", build),
            _EnvSource(dotenv_settings, ".env", build),
            _FileSource(settings_cls, build),
        )

    @classmethod
    def from_file(cls, path: str | Path, **overrides: Any) -> RocketSettings:
        """Settings from a TOML or Java-properties file, under the environment and `overrides`.

        Args:
            path: `*.toml` (a `[rocketmq]` table, or bare keys) or anything else read as Java
                properties (`rocketmq.producer.send-message-timeout=3000`; other keys ignored).
                Keys may be kebab-case, camelCase or snake_case; unknown `rocketmq.*` keys are
                logged as warnings and ignored.
            **overrides: field values that win over everything (`_env_file=None` skips `.env`).

        Returns:
            The settings.

        Raises:
            ConfigurationError: the file cannot be read or parsed, or a value is bad.
        """
        file = Path(path)
        token = _PENDING_FILE.set((file, load_settings_file(file)))
        try:
            return cls(**overrides)
        finally:
            _PENDING_FILE.reset(token)

    def listener_override(self, group: str, topic: str) -> ListenerOverride:
        """The switch and overrides configured for one listener; all defaults when none are.

        An exact match of group and topic wins; a case-insensitive one is accepted, since
        environment variable names lose their case on some platforms.
        """
        listeners = self.consumer.listeners
        topics = listeners.get(group) or next(
            (t for g, t in listeners.items() if g.lower() == group.lower()), {}
        )
        found = topics.get(topic) or next(
            (o for t, o in topics.items() if t.lower() == topic.lower()), None
        )
        return found if found is not None else ListenerOverride()

    def explain(self) -> list[tuple[str, str, str]]:
        """Every effective setting as (Spring key, value, source), secrets masked.

        Returns:
            Rows in model order. The source is "default", "env" (environment or `.env`), "file"
            or "init". Listener rows show `enabled` and the overrides that are set.
        """
        rows: list[tuple[str, str, str]] = []
        for path, value in _leaves(self):
            source = next((s for s, _, data in self._states if _provided(data, path)), "default")
            rows.append((spring_path(path), _render(value), source))
        return rows


def _leaves(model: BaseModel, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            yield from _leaves(value, (*path, name))
        elif _is_listeners(type(model), name):
            for group, topics in value.items():
                for topic, override in topics.items():
                    for key, v in override:
                        if key == "enabled" or v is not None:
                            yield (*path, name, group, topic, key), v
        else:
            yield (*path, name), value


def _render(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, SecretStr):
        return _MASK if value.get_secret_value() else ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return _URL_PASSWORD_RE.sub(lambda m: m["head"] + _MASK, value)
    return str(value)


def _describe(exc: ValidationError, build: _Build) -> str:
    problems = []
    for err in exc.errors():
        loc = tuple(str(p) for p in err["loc"] if not isinstance(p, int))
        origin = "the default"
        for source, where, data in build.states:
            if _provided(data, loc):
                origin = {"init": "a keyword argument", "file": f"file {where}"}.get(
                    source, f"{env_name(loc)} ({where})"
                )
                break
        value = err["input"]
        shown = _MASK if loc and "secret" in loc[-1] else repr(value)
        msg = str(err["msg"]).removeprefix("Value error, ")
        problems.append(f"{spring_path(loc)}={shown} from {origin}: {msg}")
    return "bad rocketmq settings:\n  " + "\n  ".join(problems)


__all__ = [
    "ConsumerSettings",
    "EmbeddedSettings",
    "IdempotencySettings",
    "ListenerOverride",
    "ProducerSettings",
    "RocketSettings",
    "TlsClientSettings",
    "load_settings_file",
    "spring_key",
    "spring_path",
]
