"""The broker's ACL check (RocketMQ's `PlainAccessValidator` / `PlainPermissionChecker`): each
step of `refusal()` in order, and `AccessValidator.guard`'s answer, count and log."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest

from rmqkit.common.names import TRACE_TOPIC
from rmqkit.protocol.acl import ACCESS_KEY, SIGNATURE, UNIQUE_MSG_QUERY_FLAG, SessionCredentials
from rmqkit.protocol.codes import RequestCode, ResponseCode
from rmqkit.protocol.command import RemotingCommand
from rmqkit.remoting.connection import Connection
from rmqkit.server.acl import validator
from rmqkit.server.acl.addresses import address_matcher
from rmqkit.server.acl.permission import ADMIN_CODES, DENY, PUB, SUB
from rmqkit.server.acl.plain import Account, AclConfig, AclFiles
from rmqkit.server.acl.validator import ACL_EXCEPTION, LOG_EVERY_S, AccessValidator, refusal

RC = RequestCode
ALICE = SessionCredentials("aliceKey01", "aliceSecret01")
CAROL = SessionCredentials("carolKey01", "carolSecret01")
ADMIN = SessionCredentials("adminKey01", "adminSecret01")
STRANGER = SessionCredentials("bobKey0001", "bobSecret01")
IP = "10.1.2.3"  # on no white list
GLOBAL_WHITE_IP = "10.10.103.7"
ALICE_WHITE_IP = "192.168.1.20"


def _config() -> AclConfig:
    return AclConfig(
        global_white=[address_matcher("10.10.103.*")],
        accounts={
            "aliceKey01": Account(
                "aliceKey01",
                "aliceSecret01",
                white=address_matcher("192.168.1.*"),
                default_topic_perm=DENY,
                default_group_perm=SUB,
                perms={
                    "orders": PUB | SUB,
                    "audit": SUB,
                    "secret": DENY,
                    "%RETRY%g-listed": SUB,
                    "%RETRY%g-denied": DENY,
                },
            ),
            "carolKey01": Account(
                "carolKey01", "carolSecret01", default_topic_perm=PUB, default_group_perm=DENY
            ),
            "adminKey01": Account(
                "adminKey01", "adminSecret01", admin=True, perms={"secret": DENY}
            ),
        },
    )


def _cmd(
    code: int,
    ext: dict[str, str] | None = None,
    body: bytes = b"",
    creds: SessionCredentials | None = None,
    version: int | None = None,
) -> RemotingCommand:
    cmd = RemotingCommand(code=code, ext_fields=dict(ext or {}), body=body)
    if version is not None:
        cmd.version = version
    if creds is not None:
        creds.sign(cmd)
    return cmd


def _send(topic: str, creds: SessionCredentials | None = ALICE) -> RemotingCommand:
    return _cmd(RC.SEND_MESSAGE_V2, {"a": "pg", "b": topic}, b"payload", creds)


def _pull(group: str, topic: str = "orders", creds: SessionCredentials = ALICE) -> RemotingCommand:
    return _cmd(RC.PULL_MESSAGE, {"consumerGroup": group, "topic": topic}, creds=creds)


# 1. global white list ------------------------------------------------------------------------


def test_global_white_list_passes_unsigned_and_unpermitted() -> None:
    assert refusal(_config(), GLOBAL_WHITE_IP, _send("secret", creds=None)) is None
    assert refusal(_config(), GLOBAL_WHITE_IP, _cmd(RC.UPDATE_AND_CREATE_TOPIC)) is None
    assert refusal(_config(), "::ffff:10.10.103.7", _send("secret", creds=None)) is None


# 2-3. access key -----------------------------------------------------------------------------


def test_missing_access_key() -> None:
    assert refusal(_config(), IP, _send("orders", creds=None)) == "No accessKey is configured"
    # even with a Signature, and from the account's own white list
    unsigned = _cmd(RC.SEND_MESSAGE, {"topic": "orders", SIGNATURE: "x"})
    assert refusal(_config(), ALICE_WHITE_IP, unsigned) == "No accessKey is configured"


def test_unknown_access_key() -> None:
    assert refusal(_config(), IP, _send("orders", STRANGER)) == "No acl config for bobKey0001"
    assert refusal(_config(), ALICE_WHITE_IP, _send("orders", STRANGER)) == (
        "No acl config for bobKey0001"
    )


# 4. account white list -----------------------------------------------------------------------


def test_account_white_list_needs_no_signature_nor_permission() -> None:
    cmd = _cmd(RC.SEND_MESSAGE, {ACCESS_KEY: "aliceKey01", "topic": "secret", SIGNATURE: "bogus"})
    assert refusal(_config(), ALICE_WHITE_IP, cmd) is None
    admin_code = _cmd(RC.DELETE_TOPIC_IN_BROKER, {ACCESS_KEY: "aliceKey01"})
    assert refusal(_config(), ALICE_WHITE_IP, admin_code) is None
    # the same request from elsewhere is checked
    assert refusal(_config(), IP, cmd) == "Check signature failed for accessKey=aliceKey01"


# 5. signature --------------------------------------------------------------------------------


def test_wrong_secret_or_missing_signature() -> None:
    forged = _send("orders", SessionCredentials("aliceKey01", "not-alices"))
    assert refusal(_config(), IP, forged) == "Check signature failed for accessKey=aliceKey01"
    missing = _cmd(RC.SEND_MESSAGE_V2, {ACCESS_KEY: "aliceKey01", "b": "orders"})
    assert refusal(_config(), IP, missing) == "Check signature failed for accessKey=aliceKey01"


def test_tampered_body_or_field_fails_the_signature() -> None:
    assert refusal(_config(), IP, _send("orders")) is None
    body = _send("orders")
    body.body = b"payloaD"
    assert refusal(_config(), IP, body) == "Check signature failed for accessKey=aliceKey01"
    field = _send("orders")
    field.ext_fields["a"] = "other-group"
    assert refusal(_config(), IP, field) == "Check signature failed for accessKey=aliceKey01"
    added = _send("orders")
    added.ext_fields["k"] = "v"
    assert refusal(_config(), IP, added) == "Check signature failed for accessKey=aliceKey01"


@pytest.mark.parametrize(
    ("version", "passes"), [(0, True), (399, True), (400, False), (409, False)]
)
def test_unique_key_flag_added_after_signing(version: int, passes: bool) -> None:
    # Clients up to 4.9.3 add the flag after signing; from 4.9.4 it is signed like any field.
    query = _cmd(RC.QUERY_MESSAGE, {"topic": "orders", "key": "k"}, creds=ALICE, version=version)
    query.ext_fields[UNIQUE_MSG_QUERY_FLAG] = "true"
    expected = None if passes else "Check signature failed for accessKey=aliceKey01"
    assert refusal(_config(), IP, query) == expected


def test_unique_key_flag_signed_by_a_new_client_passes() -> None:
    ext = {"topic": "orders", "key": "k", UNIQUE_MSG_QUERY_FLAG: "true"}
    assert refusal(_config(), IP, _cmd(RC.QUERY_MESSAGE, ext, creds=ALICE, version=401)) is None


def test_non_ascii_signature_is_a_signature_failure() -> None:
    cmd = _cmd(RC.SEND_MESSAGE_V2, {ACCESS_KEY: "aliceKey01", "b": "orders", SIGNATURE: "ümlaut"})
    assert refusal(_config(), IP, cmd) == "Check signature failed for accessKey=aliceKey01"


def test_link_local_client_with_a_zone_id_is_checked() -> None:
    assert refusal(_config(), "fe80::1%eth0", _send("orders")) is None
    assert refusal(_config(), "fe80::1%eth0", _send("secret")) == "No permission for topic:secret"


# 6. trace topic ------------------------------------------------------------------------------


def test_trace_topic_write_needs_no_topic_permission() -> None:
    # Alice's default topic permission is DENY and the trace topic is not listed.
    assert refusal(_config(), IP, _send(TRACE_TOPIC)) is None
    assert refusal(_config(), IP, _send("unlisted")) == "No default permission for topic:unlisted"
    # reading the trace topic is checked as usual
    pull = _pull("g-listed", topic=TRACE_TOPIC)
    assert refusal(_config(), IP, pull) == f"No default permission for topic:{TRACE_TOPIC}"


def test_trace_write_still_needs_a_signature() -> None:
    forged = _send(TRACE_TOPIC, SessionCredentials("aliceKey01", "not-alices"))
    assert refusal(_config(), IP, forged) == "Check signature failed for accessKey=aliceKey01"


# 7. admin ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cmd",
    [
        _send("secret", ADMIN),
        _send("anything", ADMIN),
        _pull("g-denied", "secret", ADMIN),
        _cmd(RC.UPDATE_AND_CREATE_TOPIC, {"topic": "new"}, creds=ADMIN),
        _cmd(RC.DELETE_SUBSCRIPTIONGROUP, {"groupName": "g"}, creds=ADMIN),
    ],
)
def test_admin_passes_anything_signed(cmd: RemotingCommand) -> None:
    assert refusal(_config(), IP, cmd) is None


@pytest.mark.parametrize("code", sorted(ADMIN_CODES))
def test_admin_code_from_a_non_admin(code: RequestCode) -> None:
    cmd = _cmd(code, {"topic": "orders"}, creds=ALICE)
    assert refusal(_config(), IP, cmd) == (
        f"Need admin permission for request code={int(code)}, but accessKey=aliceKey01 is not"
    )


def test_admin_code_message_is_rocketmqs() -> None:
    cmd = _cmd(RC.UPDATE_AND_CREATE_TOPIC, {"topic": "t"}, creds=CAROL)
    assert refusal(_config(), IP, cmd) == (
        "Need admin permission for request code=17, but accessKey=carolKey01 is not"
    )


# 8. resources --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cmd", "reason"),
    [
        (_send("orders"), None),
        (_pull("g-listed"), None),
        (_pull("g-unlisted"), None),  # default group permission SUB
        (_cmd(RC.GET_ROUTEINFO_BY_TOPIC, {"topic": "secret"}, creds=ALICE), None),  # no resource
        # listed and refused
        (_send("secret"), "No permission for topic:secret"),
        (_send("audit"), "No permission for topic:audit"),  # SUB listed, PUB needed
        (_pull("g-denied"), "No permission for group:g-denied"),
        (_pull("g-listed", topic="secret"), "No permission for topic:secret"),
        # unlisted, refused by the default
        (_send("t"), "No default permission for topic:t"),
        (_pull("g-listed", topic="t"), "No default permission for topic:t"),
        (_send("g", CAROL), None),  # Carol's default topic permission is PUB
        (_cmd(RC.CONSUMER_SEND_MSG_BACK, {"group": "g"}, creds=CAROL),
         "No default permission for group:g"),
        (_cmd(RC.UNREGISTER_CLIENT, {"consumerGroup": "g"}, creds=CAROL),
         "No default permission for group:g"),
    ],
)  # fmt: skip
def test_resource_permissions(cmd: RemotingCommand, reason: str | None) -> None:
    assert refusal(_config(), IP, cmd) == reason


# AccessValidator.guard -----------------------------------------------------------------------

PLAIN_ACL = """\
globalWhiteRemoteAddresses: [10.10.103.*]
accounts:
  - accessKey: aliceKey01
    secretKey: aliceSecret01
    topicPerms: [orders=PUB]
"""


def _conn(host: str = IP, port: int = 4711) -> Connection:
    return cast(Connection, SimpleNamespace(peer_host=(host, port), peer=f"{host}:{port}"))


@pytest.fixture
def guard(tmp_path: Path) -> AccessValidator:
    (tmp_path / "plain_acl.yml").write_text(PLAIN_ACL, encoding="utf-8")
    return AccessValidator(AclFiles(tmp_path))


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """A hand-driven `time.monotonic` for the validator only."""
    now = [1000.0]
    monkeypatch.setattr(validator, "time", SimpleNamespace(monotonic=lambda: now[0]))
    return now


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_guard_lets_allowed_requests_through(guard: AccessValidator) -> None:
    assert guard.guard(_conn(), _send("orders")) is None
    assert guard.guard(_conn("10.10.103.9"), _send("anything", creds=None)) is None
    assert guard.refused == 0


def test_guard_answers_system_error_with_rocketmqs_remark(guard: AccessValidator) -> None:
    cmd = _send("orders", creds=None)
    cmd.opaque = 42
    response = guard.guard(_conn(), cmd)
    assert response is not None
    assert response.code == ResponseCode.SYSTEM_ERROR
    assert response.is_response
    assert response.opaque == 42
    assert (
        response.remark == "org.apache.rocketmq.acl.common.AclException: No accessKey is configured"
    )
    assert ACL_EXCEPTION == "org.apache.rocketmq.acl.common.AclException"
    assert guard.refused == 1

    response = guard.guard(_conn(), _send("secret"))
    assert response is not None
    assert response.remark == f"{ACL_EXCEPTION}: No default permission for topic:secret"
    assert guard.refused == 2


def test_guard_uses_the_peer_host(guard: AccessValidator) -> None:
    assert guard.guard(_conn("10.10.103.1"), _send("x", creds=None)) is None
    assert guard.guard(_conn("10.10.104.1"), _send("x", creds=None)) is not None


def test_guard_logs_a_repeated_reason_once_per_interval(
    guard: AccessValidator, clock: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="rmqkit.acl")
    for _ in range(5):
        assert guard.guard(_conn(), _send("orders", creds=None)) is not None
    assert guard.refused == 5
    logged = _warnings(caplog)
    assert len(logged) == 1
    assert "No accessKey is configured" in logged[0]
    assert f"{IP}:4711" in logged[0]
    assert str(int(RC.SEND_MESSAGE_V2)) in logged[0]

    # another reason, or the same reason from another client, is logged at once
    guard.guard(_conn(), _send("secret"))
    guard.guard(_conn("10.9.9.9"), _send("orders", creds=None))
    assert len(_warnings(caplog)) == 3

    clock[0] += LOG_EVERY_S - 0.5
    guard.guard(_conn(), _send("orders", creds=None))
    assert len(_warnings(caplog)) == 3
    clock[0] += 0.5
    guard.guard(_conn(), _send("orders", creds=None))
    assert len(_warnings(caplog)) == 4
    assert guard.refused == 9


def test_guard_follows_reloaded_files(guard: AccessValidator, tmp_path: Path) -> None:
    assert guard.guard(_conn(), _send("orders", CAROL)) is not None
    path = tmp_path / "plain_acl.yml"
    path.write_text(
        PLAIN_ACL + "  - accessKey: carolKey01\n    secretKey: carolSecret01\n"
        "    defaultTopicPerm: PUB\n",
        encoding="utf-8",
    )
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert guard.files.reload_if_changed()
    assert guard.guard(_conn(), _send("orders", CAROL)) is None
