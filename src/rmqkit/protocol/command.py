"""RemotingCommand: one request or response of RocketMQ's remoting protocol, and its headers.

A command has a code, an opaque id matching a response to its request, flag bits (RESPONSE,
ONEWAY), an optional remark, `extFields` (the flattened custom header: name -> string) and a body.
Headers arrive as JSON (serialize type 0) or ROCKETMQ binary (type 1); rmqkit always answers JSON,
because some clients (ali-ons) read the header length without masking the type byte.

ROCKETMQ binary header, big-endian:

    code(2) language(1) version(2) opaque(4) flag(4)
    remark_length(4) remark                      length 0 = no remark
    ext_length(4) then entries of key_length(2) key value_length(4) value
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

import orjson

from rmqkit.protocol.codes import LanguageCode, SerializeType

FLAG_RESPONSE = 0x1
FLAG_ONEWAY = 0x2
RMQKIT_VERSION = 479
"""`MQVersion.Version` ordinal rmqkit reports (V5_3_3); clients gate features on it."""

_BIN_FIXED = struct.Struct(">hbhii")  # code, language, version, opaque, flag: 13 bytes
_INT = struct.Struct(">i")
_SHORT = struct.Struct(">h")
_LANG_BY_ORDINAL = {lc.value: lc.name for lc in LanguageCode}
_JSON = SerializeType.JSON


class HeaderError(ValueError):
    """A header that cannot be decoded; the connection that sent it is closed."""


def java_string(value: Any) -> str | None:
    """An extFields value as Java's `toString()` would give it (booleans lower-case)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    return orjson.dumps(value).decode()


@dataclass(slots=True)
class RemotingCommand:
    """A request or a response."""

    code: int
    opaque: int = 0
    flag: int = 0
    remark: str | None = None
    ext_fields: dict[str, str] = field(default_factory=dict)
    body: bytes | memoryview = b""
    language: str = LanguageCode.PYTHON.name
    version: int = RMQKIT_VERSION
    serialize_type: int = SerializeType.JSON

    @property
    def is_response(self) -> bool:
        return bool(self.flag & FLAG_RESPONSE)

    @property
    def is_oneway(self) -> bool:
        return bool(self.flag & FLAG_ONEWAY)

    def response(
        self,
        code: int,
        remark: str | None = None,
        ext_fields: dict[str, str] | None = None,
        body: bytes | memoryview = b"",
    ) -> RemotingCommand:
        """The response to this request: same opaque, RESPONSE flag set."""
        return RemotingCommand(
            code=code,
            opaque=self.opaque,
            flag=FLAG_RESPONSE,
            remark=remark,
            ext_fields=ext_fields or {},
            body=body,
        )

    def encode_header(self) -> bytes:
        """The JSON header, the form rmqkit always writes."""
        header: dict[str, Any] = {
            "code": self.code,
            "language": self.language,
            "version": self.version,
            "opaque": self.opaque,
            "flag": self.flag,
        }
        if self.remark is not None:
            header["remark"] = self.remark
        header["extFields"] = self.ext_fields
        header["serializeTypeCurrentRPC"] = "JSON"
        return orjson.dumps(header)


def decode_json_header(data: bytes | memoryview) -> RemotingCommand:
    """A JSON header; numbers and booleans in extFields become Java-style strings."""
    try:
        h = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise HeaderError(f"header is not JSON: {exc}") from exc
    if not isinstance(h, dict):
        raise HeaderError("header is not a JSON object")
    code = h.get("code")
    if type(code) is not int:  # exact types first: one check per field on the hot path
        try:
            code = int(code)  # type: ignore[arg-type]
        except (TypeError, ValueError) as exc:
            raise HeaderError("header has no integer 'code'") from exc
    raw_ext = h.get("extFields") or {}
    if not isinstance(raw_ext, dict):
        raise HeaderError("'extFields' is not an object")
    ext: dict[str, str] = raw_ext  # JSON keys are strings; the values nearly always are too
    for v in raw_ext.values():
        if type(v) is not str:
            ext = {}
            for k, value in raw_ext.items():
                s = java_string(value)
                if s is not None:
                    ext[str(k)] = s
            break
    lang = h.get("language", "JAVA")
    if type(lang) is not str:
        lang = _LANG_BY_ORDINAL.get(lang, "OTHER") if isinstance(lang, int) else str(lang)
    remark = h.get("remark")
    if remark is not None and type(remark) is not str:
        remark = str(remark)
    opaque = h.get("opaque", 0)
    flag = h.get("flag", 0)
    version = h.get("version", 0)
    try:
        if type(opaque) is not int:
            opaque = int(opaque)
        if type(flag) is not int:
            flag = int(flag)
        if type(version) is not int:
            version = int(version)
    except (TypeError, ValueError) as exc:
        raise HeaderError(f"header field has the wrong type: {exc}") from exc
    # Positional (the field order of RemotingCommand): twice as fast as keywords, per frame.
    return RemotingCommand(code, opaque, flag, remark, ext, b"", lang, version, _JSON)


def decode_binary_header(data: bytes | memoryview) -> RemotingCommand:
    """A ROCKETMQ binary header."""
    view = memoryview(data)
    n = len(view)
    if n < _BIN_FIXED.size + 8:
        raise HeaderError(f"binary header of {n} bytes is too short")
    code, lang, version, opaque, flag = _BIN_FIXED.unpack_from(view, 0)
    p = _BIN_FIXED.size
    (rlen,) = _INT.unpack_from(view, p)
    p += 4
    if rlen < 0 or p + rlen + 4 > n:
        raise HeaderError(f"remark length {rlen} runs past the header")
    remark = bytes(view[p : p + rlen]).decode("utf-8", "replace") if rlen else None
    p += rlen
    (elen,) = _INT.unpack_from(view, p)
    p += 4
    if elen < 0 or p + elen > n:
        raise HeaderError(f"extFields length {elen} runs past the header")
    end = p + elen
    ext: dict[str, str] = {}
    while p < end:
        if p + 2 > end:
            raise HeaderError("extFields entry cut short")
        (klen,) = _SHORT.unpack_from(view, p)
        p += 2
        if klen < 0 or p + klen + 4 > end:
            raise HeaderError("extFields key runs past the header")
        key = bytes(view[p : p + klen]).decode("utf-8", "replace")
        p += klen
        (vlen,) = _INT.unpack_from(view, p)
        p += 4
        if vlen < 0 or p + vlen > end:
            raise HeaderError("extFields value runs past the header")
        ext[key] = bytes(view[p : p + vlen]).decode("utf-8", "replace")
        p += vlen
    return RemotingCommand(
        code=code,
        opaque=opaque,
        flag=flag,
        remark=remark,
        ext_fields=ext,
        language=_LANG_BY_ORDINAL.get(lang, "OTHER"),
        version=version,
        serialize_type=SerializeType.ROCKETMQ,
    )


def encode_binary_header(cmd: RemotingCommand) -> bytes:
    """The ROCKETMQ binary form (rmqkit never sends it; tests and tools use it)."""
    lang = LanguageCode[cmd.language].value if cmd.language in LanguageCode.__members__ else 7
    parts = [_BIN_FIXED.pack(cmd.code, lang, cmd.version, cmd.opaque, cmd.flag)]
    remark = (cmd.remark or "").encode()
    parts += [_INT.pack(len(remark)), remark]
    ext = b"".join(
        _SHORT.pack(len(kb)) + kb + _INT.pack(len(vb)) + vb
        for kb, vb in ((k.encode(), v.encode()) for k, v in cmd.ext_fields.items())
    )
    parts += [_INT.pack(len(ext)), ext]
    return b"".join(parts)
