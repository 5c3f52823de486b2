"""AccessValidator: checks each request against plain ACL before its processor sees it.

RocketMQ's `PlainAccessValidator` (as of 5.1): in this order,

    1. a client on the global white list passes;
    2. no AccessKey                     -> "No accessKey is configured"
    3. an AccessKey no account has      -> "No acl config for <ak>"
    4. a client on the account's white list passes (no signature needed);
    5. a wrong or missing Signature     -> "Check signature failed for accessKey=<ak>"
    6. a write to the message trace topic passes;
    7. an admin passes; an admin request from anyone else
                                        -> "Need admin permission for request code=<c>, but
                                            accessKey=<ak> is not"
    8. every resource the request needs (see `permission.needed_resources`) must be allowed by
       the account's entry for it    -> "No permission for <group:g | topic:t>"
       or, without one, by its default  -> "No default permission for <...>"

A refusal is answered as RocketMQ answers it: SYSTEM_ERROR with the remark
`org.apache.rocketmq.acl.common.AclException: <reason>` (clients show the remark; Java's retry
another broker, as for any SYSTEM_ERROR). A refused one-way request is dropped.
"""

from __future__ import annotations

import logging
import time

from rmqkit.protocol.acl import (
    ACCESS_KEY,
    SIGNATURE,
    UNIQUE_MSG_QUERY_FLAG,
    UNSIGNED_QUERY_FLAG_MAX_VERSION,
    signature_matches,
    signed_content,
)
from rmqkit.protocol.codes import ResponseCode
from rmqkit.protocol.command import RemotingCommand
from rmqkit.remoting.connection import Connection
from rmqkit.server.acl.permission import (
    ADMIN_CODES,
    check_permission,
    describe,
    is_group,
    is_trace_write,
    needed_resources,
)
from rmqkit.server.acl.plain import AclConfig, AclFiles

log = logging.getLogger("rmqkit.acl")

ACL_EXCEPTION = "org.apache.rocketmq.acl.common.AclException"
LOG_EVERY_S = 10.0
"""A refusal with the same reason is logged at most this often (a misconfigured client retries
in a loop)."""


def refusal(config: AclConfig, ip: str, cmd: RemotingCommand) -> str | None:
    """Why `cmd` from `ip` is refused, or None when it may go on."""
    if config.white_listed(ip):
        return None
    ext = cmd.ext_fields
    ak = ext.get(ACCESS_KEY)
    if ak is None:
        return "No accessKey is configured"
    account = config.accounts.get(ak)
    if account is None:
        return f"No acl config for {ak}"
    if account.white(ip):
        return None
    skip = UNIQUE_MSG_QUERY_FLAG if cmd.version <= UNSIGNED_QUERY_FLAG_MAX_VERSION else None
    content = signed_content(ext, cmd.body, skip=skip)
    if not signature_matches(account.secret_key, content, ext.get(SIGNATURE)):
        return f"Check signature failed for accessKey={ak}"
    needed = needed_resources(cmd)
    if is_trace_write(needed) or account.admin:
        return None
    if cmd.code in ADMIN_CODES:
        return f"Need admin permission for request code={cmd.code}, but accessKey={ak} is not"
    for resource, perm in needed.items():
        owned = account.perms.get(resource)
        if owned is None:
            default = account.default_group_perm if is_group(resource) else (
                account.default_topic_perm)  # fmt: skip
            if not check_permission(perm, default):
                return f"No default permission for {describe(resource)}"
        elif not check_permission(perm, owned):
            return f"No permission for {describe(resource)}"
    return None


class AccessValidator:
    """The broker's ACL guard (`RemotingServer.guard`), over files re-read when they change."""

    def __init__(self, files: AclFiles) -> None:
        self.files = files
        self.refused = 0
        self._logged: dict[str, float] = {}

    def guard(self, conn: Connection, cmd: RemotingCommand) -> RemotingCommand | None:
        """None to let `cmd` through, or the SYSTEM_ERROR response refusing it."""
        ip = conn.peer_host[0]
        reason = refusal(self.files.config, ip, cmd)
        if reason is None:
            return None
        self.refused += 1
        now = time.monotonic()
        key = f"{ip} {reason}"
        if now - self._logged.get(key, -LOG_EVERY_S) >= LOG_EVERY_S:
            if len(self._logged) > 1000:
                self._logged.clear()
            self._logged[key] = now
            log.warning("refused request code %d from %s: %s", cmd.code, conn.peer, reason)
        return cmd.response(ResponseCode.SYSTEM_ERROR, f"{ACL_EXCEPTION}: {reason}")
