"""Request signing of ACL 1.0 (`AclClientRPCHook`): signed content, HMAC-SHA1, sign and verify.

Golden signatures were computed outside Python with OpenSSL, so a wrong digest, key encoding or
Base64 flavour in `rmqkit.protocol.acl` cannot agree with them by construction.
"""

from __future__ import annotations

from typing import Any, cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rmqkit.protocol.acl import (
    ACCESS_KEY,
    SECURITY_TOKEN,
    SIGNATURE,
    UNIQUE_MSG_QUERY_FLAG,
    SessionCredentials,
    signature,
    signature_matches,
    signed_content,
)
from rmqkit.protocol.codes import RequestCode
from rmqkit.protocol.command import RemotingCommand

# Each golden value was made on the command line with
#     printf '<content>' | openssl dgst -sha1 -hmac '<secret>' -binary | base64
# (OpenSSL 3.0; printf of a UTF-8 terminal string gives its UTF-8 bytes).
GOLDEN_EMPTY = "beQgVA0KNM4WtCe68fj2DEn3WWU="  # secret 12345678, content ''
GOLDEN_SEND = "DzabETDA/rIUlO139G5YJbUCCY4="  # secret 12345678, 'RocketMQpgtopicAhello'
# secret 'sécret-ключ', content 'orderApp01订单ü' (UTF-8 key and UTF-8 content)
GOLDEN_UNICODE = "dfRm0SX6h3tLh1AJDD/ESJyLDUY="
# secret 12345678, content printf 'RocketMQtrue\x00\xff\x80' (a body that is not UTF-8)
GOLDEN_BINARY = "4rNgUnJm+46uiZVQV+HUfx+wX5I="

RESERVED = {ACCESS_KEY, SIGNATURE, SECURITY_TOKEN}


def _cmd(ext: dict[str, str], body: bytes = b"") -> RemotingCommand:
    return RemotingCommand(code=RequestCode.SEND_MESSAGE, ext_fields=dict(ext), body=body)


def _verifies(secret: str, cmd: RemotingCommand) -> bool:
    content = signed_content(cmd.ext_fields, cmd.body)
    return signature_matches(secret, content, cmd.ext_fields.get(SIGNATURE))


# signed_content ------------------------------------------------------------------------------


def test_content_is_values_in_key_order_then_body() -> None:
    ext = {"b": "2", "a": "1", "C": "3", "aa": "4"}
    # Uppercase sorts before lowercase, "a" before "aa": Java TreeMap order for ASCII keys.
    assert signed_content(ext, b"BODY") == b"3142BODY"


def test_content_leaves_out_the_signature() -> None:
    ext = {"AccessKey": "ak", SIGNATURE: "sig", "topic": "t"}
    assert signed_content(ext) == b"akt"


def test_content_leaves_out_the_skip_key_only() -> None:
    ext = {"key": "k", UNIQUE_MSG_QUERY_FLAG: "true", "topic": "t"}
    assert signed_content(ext, skip=UNIQUE_MSG_QUERY_FLAG) == b"kt"
    assert signed_content(ext) == b"truekt"  # "_" sorts before lower case
    assert signed_content(ext, skip="absent") == b"truekt"


def test_content_is_utf8_of_non_ascii_values() -> None:
    ext = {"k": "订单ü", "AccessKey": "orderApp01"}
    assert signed_content(ext) == "orderApp01订单ü".encode()
    assert signed_content(ext) == b"orderApp01\xe8\xae\xa2\xe5\x8d\x95\xc3\xbc"


def test_content_appends_a_binary_or_memoryview_body_as_is() -> None:
    body = b"\x00\xff\x80"
    assert signed_content({"a": "x"}, body) == b"x\x00\xff\x80"
    assert signed_content({"a": "x"}, memoryview(body)) == b"x\x00\xff\x80"


@pytest.mark.parametrize(
    ("value", "text"),
    [(True, "true"), (False, "false"), (4, "4"), (-12, "-12"), (1.5, "1.5")],
)
def test_content_renders_non_str_values_as_java_would(value: object, text: str) -> None:
    ext = cast("dict[str, str]", {"a": value, "b": "x"})
    assert signed_content(ext) == text.encode() + b"x"


def test_content_of_nothing_is_empty() -> None:
    assert signed_content({}) == b""
    assert signed_content({SIGNATURE: "s"}) == b""


# signature (golden values from openssl) ------------------------------------------------------


@pytest.mark.parametrize(
    ("secret", "content", "expected"),
    [
        ("12345678", b"", GOLDEN_EMPTY),
        ("12345678", b"RocketMQpgtopicAhello", GOLDEN_SEND),
        ("sécret-ключ", "orderApp01订单ü".encode(), GOLDEN_UNICODE),
        ("12345678", b"RocketMQtrue\x00\xff\x80", GOLDEN_BINARY),
    ],
)
def test_signature_matches_openssl(secret: str, content: bytes, expected: str) -> None:
    assert signature(secret, content) == expected
    assert signature_matches(secret, content, expected)


def test_signature_of_built_content_matches_openssl() -> None:
    ext = cast("dict[str, str]", {"AccessKey": "RocketMQ", "unitMode": True})
    assert signature("12345678", signed_content(ext, b"\x00\xff\x80")) == GOLDEN_BINARY
    uni = {"k": "订单ü", "AccessKey": "orderApp01"}
    assert signature("sécret-ключ", signed_content(uni)) == GOLDEN_UNICODE


def test_signature_matches_refuses_wrong_missing_and_other_key() -> None:
    assert not signature_matches("12345678", b"RocketMQpgtopicAhello", None)
    assert not signature_matches("12345678", b"RocketMQpgtopicAhello", "")
    assert not signature_matches("12345678", b"RocketMQpgtopicAhellp", GOLDEN_SEND)
    assert not signature_matches("12345679", b"RocketMQpgtopicAhello", GOLDEN_SEND)
    assert not signature_matches("12345678", b"RocketMQpgtopicAhello", GOLDEN_SEND.rstrip("="))


@pytest.mark.parametrize("claimed", ["é", "签名", "\ufffd" * 28])
def test_non_ascii_claimed_signature_does_not_match(claimed: str) -> None:
    assert signature_matches("12345678", b"RocketMQpgtopicAhello", claimed) is False


# SessionCredentials --------------------------------------------------------------------------


def test_sign_adds_access_key_and_golden_signature() -> None:
    cmd = _cmd({"topic": "topicA", "producerGroup": "pg"}, b"hello")
    SessionCredentials("RocketMQ", "12345678").sign(cmd)
    assert cmd.ext_fields == {
        "topic": "topicA",
        "producerGroup": "pg",
        ACCESS_KEY: "RocketMQ",
        SIGNATURE: GOLDEN_SEND,
    }
    assert _verifies("12345678", cmd)


def test_sign_adds_security_token_only_when_set() -> None:
    plain = _cmd({"topic": "t"})
    SessionCredentials("accessKey1", "secretKey1").sign(plain)
    assert SECURITY_TOKEN not in plain.ext_fields

    with_token = _cmd({"topic": "t"})
    SessionCredentials("accessKey1", "secretKey1", "token-1").sign(with_token)
    assert with_token.ext_fields[SECURITY_TOKEN] == "token-1"
    # The token is signed: it is part of the content before the Signature is added.
    assert signed_content(with_token.ext_fields) == b"accessKey1token-1t"
    assert _verifies("secretKey1", with_token)
    assert plain.ext_fields[SIGNATURE] != with_token.ext_fields[SIGNATURE]


def test_sign_twice_replaces_the_signature() -> None:
    cmd = _cmd({"topic": "t"}, b"x")
    creds = SessionCredentials("accessKey1", "secretKey1")
    creds.sign(cmd)
    first = cmd.ext_fields[SIGNATURE]
    creds.sign(cmd)
    assert cmd.ext_fields[SIGNATURE] == first
    assert _verifies("secretKey1", cmd)


@pytest.mark.parametrize("field", ["topic", "producerGroup", ACCESS_KEY, SECURITY_TOKEN])
def test_changing_any_signed_field_breaks_the_signature(field: str) -> None:
    cmd = _cmd({"topic": "orders", "producerGroup": "pg"}, b"body")
    SessionCredentials("accessKey1", "secretKey1", "token-1").sign(cmd)
    assert _verifies("secretKey1", cmd)
    cmd.ext_fields[field] += "x"
    assert not _verifies("secretKey1", cmd)


def test_changing_the_body_or_adding_a_field_breaks_the_signature() -> None:
    cmd = _cmd({"topic": "orders"}, b"body")
    SessionCredentials("accessKey1", "secretKey1").sign(cmd)
    cmd.body = b"bodY"
    assert not _verifies("secretKey1", cmd)

    cmd = _cmd({"topic": "orders"}, b"body")
    SessionCredentials("accessKey1", "secretKey1").sign(cmd)
    cmd.ext_fields["extra"] = "1"
    assert not _verifies("secretKey1", cmd)


def test_a_different_secret_does_not_verify() -> None:
    cmd = _cmd({"topic": "orders"}, b"body")
    SessionCredentials("accessKey1", "secretKey1").sign(cmd)
    assert not _verifies("secretKey2", cmd)


def test_repr_hides_secret_and_token() -> None:
    creds = SessionCredentials("visibleKey", "hush-secret", "hush-token")
    text = repr(creds)
    assert "visibleKey" in text
    assert "hush-secret" not in text
    assert "hush-token" not in text
    assert "hush" not in str(creds)


def test_credentials_are_hashable_and_compare_by_value() -> None:
    a = SessionCredentials("accessKey1", "secretKey1")
    assert a == SessionCredentials("accessKey1", "secretKey1")
    assert len({a, SessionCredentials("accessKey1", "secretKey1")}) == 1
    assert a != SessionCredentials("accessKey1", "secretKey2")


@pytest.mark.parametrize(("ak", "sk"), [("", "secretKey1"), ("accessKey1", ""), ("", "")])
def test_empty_keys_raise(ak: str, sk: str) -> None:
    with pytest.raises(ValueError, match="access key and a secret key"):
        SessionCredentials(ak, sk)


# Property: sign then verify; any single change fails -----------------------------------------

_keys = st.text(min_size=1, max_size=12).filter(lambda k: k not in RESERVED)
_ext = st.dictionaries(_keys, st.text(max_size=20), max_size=8)
_creds = st.builds(
    SessionCredentials,
    st.text(min_size=1, max_size=16),
    st.text(min_size=1, max_size=16),
    st.none() | st.text(max_size=16),
)


@given(creds=_creds, ext=_ext, body=st.binary(max_size=64))
def test_sign_then_verify_round_trips(
    creds: SessionCredentials, ext: dict[str, str], body: bytes
) -> None:
    cmd = _cmd(ext, body)
    creds.sign(cmd)
    assert _verifies(creds.secret_key, cmd)
    assert cmd.ext_fields[ACCESS_KEY] == creds.access_key
    assert (SECURITY_TOKEN in cmd.ext_fields) == (creds.security_token is not None)


@given(creds=_creds, ext=_ext, body=st.binary(max_size=64), data=st.data())
def test_any_single_change_fails(
    creds: SessionCredentials, ext: dict[str, str], body: bytes, data: Any
) -> None:
    cmd = _cmd(ext, body)
    creds.sign(cmd)
    signed = sorted(k for k in cmd.ext_fields if k != SIGNATURE)
    target = data.draw(st.sampled_from([*signed, "<body>"]), label="changed")
    if target == "<body>":
        new_body = data.draw(st.binary(max_size=64).filter(lambda b: b != body), label="body")
        cmd.body = new_body
    else:
        old = cmd.ext_fields[target]
        cmd.ext_fields[target] = data.draw(
            st.text(max_size=20).filter(lambda v: v != old), label="value"
        )
    assert not _verifies(creds.secret_key, cmd)
