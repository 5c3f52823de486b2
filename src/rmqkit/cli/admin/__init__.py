"""`rmqkit admin`: RocketMQ's `mqadmin` sub-commands, under their mqadmin names and flags.

`rmqkit admin topicStatus -n 127.0.0.1:9876 -t order` asks what `mqadmin topicStatus` asks, of
rmqkit or of an Apache RocketMQ cluster, through `rmqkit.client.admin.AdminClient`. Names match
in any case (`topicstatus` works too). Every command takes `-n` (or `NAMESRV_ADDR`, as mqadmin
does), `--access-key`/`--secret-key` for a cluster with ACL on, and `--tls`/`--tls-config`;
the ones that print a table also take `--json` (one JSON document, for scripts).

A refusal, an unreachable NameServer or broker, or a bad argument ends the command with exit
status 1 and one line saying what went wrong, never a traceback.
"""

from __future__ import annotations

import click

from rmqkit.cli.admin.cluster import register_cluster
from rmqkit.cli.admin.consumers import register_consumers
from rmqkit.cli.admin.groups import register_groups
from rmqkit.cli.admin.messages import register_messages
from rmqkit.cli.admin.topics import register_topics

__all__ = ["admin_group"]


class _MqadminGroup(click.Group):
    """Finds a sub-command whatever its case, as mqadmin users type it (`clusterlist`)."""

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        found = super().get_command(ctx, cmd_name)
        if found is not None:
            return found
        wanted = cmd_name.replace("-", "").lower()
        for name in self.list_commands(ctx):
            if name.lower() == wanted:
                return super().get_command(ctx, name)
        return None


@click.group(name="admin", cls=_MqadminGroup)
def admin_group() -> None:
    """Administer a cluster: RocketMQ's mqadmin commands (topicList, topicStatus, updateTopic,
    consumerProgress, queryMsgById, ...), against rmqkit or Apache RocketMQ."""


for register in (register_cluster, register_topics, register_groups, register_consumers,
                 register_messages):  # fmt: skip
    register(admin_group)
