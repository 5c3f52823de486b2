"""Plain ACL (RocketMQ's ACL 1.0): accounts from plain_acl.yml, signed requests, permissions.

With `aclEnable=true` the broker checks every request before its processor sees it (see
`validator`); the NameServer checks nothing, as RocketMQ's does not.
"""

from rmqkit.server.acl.plain import AclConfig, AclFiles, acl_folder, load_acl
from rmqkit.server.acl.validator import AccessValidator

__all__ = ["AccessValidator", "AclConfig", "AclFiles", "acl_folder", "load_acl"]
