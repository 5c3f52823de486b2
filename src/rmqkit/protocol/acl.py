"""Request signatures of RocketMQ's ACL (`AclClientRPCHook` on the client, plain ACL on the broker).

A client with an access key adds `AccessKey` (and `SecurityToken` when it has one) to a request's
extFields, then signs the request and adds `Signature`. The broker recomputes the signature from
what arrived and compares.

What is signed, as bytes:

    values of every extField except Signature, in key order, joined with nothing, UTF-8
    followed by the request body, as is

    Signature = base64(HMAC-SHA1(key = secret key as UTF-8, message = those bytes))

Key order is Java's `TreeMap<String, ...>` order (UTF-16 code units); for the ASCII names
headers use, that is Python's string order. The C++ client and ali-ons also sign an `OnsChannel`
field; it arrives as an extField, so the broker signs it too and the two sides agree.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field

from rmqkit.protocol.command import RemotingCommand, java_string

ACCESS_KEY = "AccessKey"
SIGNATURE = "Signature"
SECURITY_TOKEN = "SecurityToken"
UNIQUE_MSG_QUERY_FLAG = "_UNIQUE_KEY_QUERY"
"""QUERY_MESSAGE's "by unique key" flag. Clients up to 4.9.3 (version ordinal <= 399) added it
after signing, so a broker leaves it out of what it checks for them."""
UNSIGNED_QUERY_FLAG_MAX_VERSION = 399
"""`MQVersion.Version.V4_9_3.ordinal()`."""


def signed_content(
    ext_fields: Mapping[str, str], body: bytes | memoryview = b"", *, skip: str | None = None
) -> bytes:
    """The bytes a signature covers: extField values in key order (not `Signature`, nor
    `skip`), then the body."""
    parts = [
        v if type(v) is str else (java_string(v) or "")
        for k, v in sorted(ext_fields.items())
        if k != SIGNATURE and k != skip
    ]
    return "".join(parts).encode() + bytes(body)


def signature(secret_key: str, content: bytes) -> str:
    """Base64 of HMAC-SHA1 of `content` keyed by `secret_key`."""
    digest = hmac.new(secret_key.encode(), content, hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def signature_matches(secret_key: str, content: bytes, claimed: str | None) -> bool:
    """True when `claimed` is the signature of `content` (compared in constant time)."""
    if claimed is None or not claimed.isascii():  # base64 is ASCII; compare_digest needs it
        return False
    return hmac.compare_digest(signature(secret_key, content), claimed)


@dataclass(frozen=True, slots=True)
class SessionCredentials:
    """An access key and its secret (RocketMQ's `SessionCredentials`); `repr` hides the secret.

    Hashable, so client instances can be shared per set of credentials.
    """

    access_key: str
    secret_key: str = field(repr=False)
    security_token: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.access_key or not self.secret_key:
            raise ValueError("ACL credentials need both an access key and a secret key")

    def sign(self, cmd: RemotingCommand) -> None:
        """Add `AccessKey`, `SecurityToken` (if any) and `Signature` to `cmd`'s extFields."""
        ext = cmd.ext_fields
        ext[ACCESS_KEY] = self.access_key
        if self.security_token is not None:
            ext[SECURITY_TOKEN] = self.security_token
        ext[SIGNATURE] = signature(self.secret_key, signed_content(ext, cmd.body))
