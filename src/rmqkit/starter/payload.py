"""Payload conversion: Python objects to message bodies and back, decided by type annotations
(rocketmq-spring's `RocketMQMessageConverter`, with pydantic and orjson instead of Jackson).

| annotation              | body                                   |
|-------------------------|----------------------------------------|
| `bytes` (or none)       | the body as it is                      |
| `str`                   | UTF-8 text                             |
| a pydantic model        | JSON, validated by the model           |
| a dataclass, dict, list, TypedDict, ... | JSON, validated by a pydantic `TypeAdapter` |

A body that does not decode or validate raises `PayloadError`; the listener sends that message to
the dead-letter queue at once (with the error in a property) instead of retrying it forever.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import orjson
from pydantic import BaseModel, TypeAdapter, ValidationError

from rmqkit.errors import RmqkitError


class PayloadError(RmqkitError):
    """A message body that does not convert to the handler's payload type."""


def _default(obj: Any) -> Any:
    if isinstance(obj, BaseModel):
        return obj.model_dump(mode="json")
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def encode_payload(payload: object) -> bytes:
    """The message body for a payload: bytes as they are, str as UTF-8, anything else as JSON.

    Raises:
        PayloadError: the payload cannot be serialized to JSON.
    """
    if isinstance(payload, bytes | bytearray | memoryview):
        return bytes(payload)
    if isinstance(payload, str):
        return payload.encode()
    if isinstance(payload, BaseModel):
        return payload.model_dump_json().encode()
    try:
        return orjson.dumps(payload, default=_default, option=orjson.OPT_NON_STR_KEYS)
    except TypeError as exc:
        raise PayloadError(f"cannot serialize a {type(payload).__name__}: {exc}") from exc


@functools.lru_cache(maxsize=512)
def _adapter(annotation: Any) -> TypeAdapter[Any]:
    return TypeAdapter(annotation)


class PayloadType:
    """Converts bodies to one annotation; built once per listener, used per message."""

    __slots__ = ("_decode", "_model", "annotation")

    def __init__(self, annotation: Any) -> None:
        self.annotation = annotation
        self._decode: Callable[[bytes], Any]
        self._model: type[BaseModel] | None = None
        if annotation in (bytes, inspect.Parameter.empty, None, Any):
            self._decode = bytes
        elif annotation is str:
            self._decode = self._text
        elif inspect.isclass(annotation) and issubclass(annotation, BaseModel):
            self._decode = annotation.model_validate_json
            self._model = annotation
        else:
            try:
                self._decode = _adapter(annotation).validate_json
            except Exception as exc:  # pydantic raises several types for unusable annotations
                raise TypeError(f"cannot decode payloads into {annotation!r}: {exc}") from exc

    @staticmethod
    def _text(body: bytes) -> str:
        return body.decode()

    def decode(self, body: bytes) -> Any:
        """The payload of one body.

        Raises:
            PayloadError: the body does not decode or validate (the message names the type).
        """
        try:
            if self._model is not None:
                # What model_validate_json does, minus its keyword handling: this runs per
                # message. Looked up each time, so a model_rebuild() later is still seen.
                return self._model.__pydantic_validator__.validate_json(body)
            return self._decode(body)
        except ValidationError as exc:
            raise PayloadError(
                f"payload does not validate as {_name(self.annotation)}: "
                f"{exc.error_count()} error(s): {_errors(exc)}"
            ) from exc
        except (UnicodeDecodeError, ValueError) as exc:
            raise PayloadError(f"payload is not a valid {_name(self.annotation)}: {exc}") from exc


def _name(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or repr(annotation)


def _errors(exc: ValidationError) -> str:
    parts = []
    for e in exc.errors()[:5]:
        loc = ".".join(str(p) for p in e["loc"]) or "(root)"
        parts.append(f"{loc}: {e['msg']}")
    return "; ".join(parts)
