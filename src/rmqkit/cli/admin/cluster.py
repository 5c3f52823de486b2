"""`rmqkit admin` commands about brokers and the NameServers: clusterList, brokerStatus,
getBrokerConfig, updateBrokerConfig, updateKvConfig, deleteKvConfig."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import click

from rmqkit.cli.admin._common import (
    Target,
    cluster_options,
    emit,
    json_option,
    print_json,
    where_options,
)
from rmqkit.client.admin import AdminClient

_CLUSTER_COLUMNS = [
    ("cluster", "Cluster Name"), ("brokerName", "Broker Name"), ("brokerId", "BID"),
    ("addr", "Addr"), ("version", "Version"), ("inTps", "InTPS"), ("outTps", "OutTPS"),
    ("hour", "Hour"), ("space", "SPACE"),
]  # fmt: skip
_MORE_STATS_COLUMNS = [
    ("cluster", "Cluster Name"), ("brokerName", "Broker Name"), ("brokerId", "BID"),
    ("inTotalYest", "InTotalYest"), ("outTotalYest", "OutTotalYest"),
    ("inTotalToday", "InTotalToday"), ("outTotalToday", "OutTotalToday"),
]  # fmt: skip


def register_cluster(group: click.Group) -> None:
    for command in (
        cluster_list,
        broker_status,
        get_broker_config,
        update_broker_config,
        update_kv,
        delete_kv,
    ):
        group.add_command(command)


@click.command(name="clusterList")
@cluster_options
@click.option("-c", "--clusterName", "cluster", default=None, help="Only this cluster.")
@click.option(
    "-m", "--moreStats", "more_stats", is_flag=True,
    help="Messages in and out yesterday and today instead of the rates.",
)  # fmt: skip
@json_option
def cluster_list(target: Target, cluster: str | None, more_stats: bool, as_json: bool) -> None:
    """Every broker of every cluster (or of one): its members, messages in and out per second
    over the last 10 s, hours of messages kept, and the share of its disk used.

    A broker that does not answer is listed with '-' for its figures."""

    async def work(admin: AdminClient) -> list[dict[str, Any]]:
        rows = await admin.brokers(cluster)
        if cluster is not None and not rows:
            raise click.ClickException(f"no cluster named {cluster!r} is registered")
        return [r.to_json() for r in rows]

    emit(target.run(work), _MORE_STATS_COLUMNS if more_stats else _CLUSTER_COLUMNS, as_json)


@click.command(name="brokerStatus")
@cluster_options
@where_options
@json_option
def broker_status(
    target: Target, cluster: str | None, broker_addr: str | None, as_json: bool
) -> None:
    """One broker's runtime figures (-b), or every master's (-c, or neither)."""
    _each_broker(target, cluster, broker_addr, AdminClient.broker_runtime, as_json)


@click.command(name="getBrokerConfig")
@cluster_options
@where_options
@json_option
def get_broker_config(
    target: Target, cluster: str | None, broker_addr: str | None, as_json: bool
) -> None:
    """The configuration a broker runs with (-b), or every master's (-c, or neither)."""
    _each_broker(target, cluster, broker_addr, AdminClient.broker_config, as_json)


@click.command(name="updateBrokerConfig")
@cluster_options
@click.option("-b", "--brokerAddr", "broker_addr", default=None, metavar="HOST:PORT",
              help="One broker.")  # fmt: skip
@click.option("-c", "--clusterName", "cluster", default=None,
              help="Every broker of this cluster, masters and slaves.")  # fmt: skip
@click.option("-k", "--key", required=True, help="A broker.properties key.")
@click.option("-v", "--value", required=True)
def update_broker_config(
    target: Target, broker_addr: str | None, cluster: str | None, key: str, value: str
) -> None:
    """Set one broker.properties key on a broker (-b) or on every broker of a cluster (-c).

    brokerPermission, autoCreateTopicEnable, autoCreateSubscriptionGroup and
    defaultTopicQueueNums apply at once; every key is written to the properties file the
    broker was started with, and the others apply at its next start. Each broker says which."""
    if (broker_addr is None) == (cluster is None):
        raise click.UsageError("give one of -b (a broker) and -c (a cluster)")

    async def work(admin: AdminClient) -> dict[str, str]:
        if broker_addr is not None:
            addrs = [broker_addr]
        else:
            assert cluster is not None
            addrs = await admin.cluster_member_addrs(cluster)
            if not addrs:
                raise click.ClickException(f"no cluster named {cluster!r} is registered")
        return {a: await admin.update_broker_config(a, {key: value}) for a in addrs}

    for addr, remark in target.run(work).items():
        click.echo(f"update broker config success, {addr}: {remark or 'done'}")


def _each_broker(
    target: Target, cluster: str | None, broker_addr: str | None,
    ask: Callable[[AdminClient, str], Awaitable[dict[str, str]]], as_json: bool,
) -> None:  # fmt: skip
    """Ask one broker, or every master, for a key-value table and print the tables."""

    async def work(admin: AdminClient) -> dict[str, dict[str, str]]:
        return {a: await ask(admin, a) for a in await admin.write_addrs(cluster, broker_addr)}

    tables = target.run(work)
    if as_json:
        print_json(tables)
        return
    for addr, table in tables.items():
        if len(tables) > 1:
            click.echo(f"============ {addr} ============")
        width = max((len(k) for k in table), default=0)
        for key in sorted(table):
            click.echo(f"{key:<{width}} : {table[key]}")


@click.command(name="updateKvConfig")
@cluster_options
@click.option("-s", "--namespace", required=True)
@click.option("-k", "--key", required=True)
@click.option("-v", "--value", required=True)
def update_kv(target: Target, namespace: str, key: str, value: str) -> None:
    """Set a KV config item on every NameServer."""
    target.run(lambda admin: admin.put_kv(namespace, key, value))
    click.echo(f"set {namespace}/{key} on every NameServer")


@click.command(name="deleteKvConfig")
@cluster_options
@click.option("-s", "--namespace", required=True)
@click.option("-k", "--key", required=True)
def delete_kv(target: Target, namespace: str, key: str) -> None:
    """Delete a KV config item from every NameServer."""
    target.run(lambda admin: admin.delete_kv(namespace, key))
    click.echo(f"deleted {namespace}/{key} from every NameServer")
