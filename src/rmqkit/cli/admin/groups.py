"""`rmqkit admin` commands about consumer and producer groups: updateSubGroup, deleteSubGroup,
consumerProgress, consumerConnection, producerConnection, resetOffsetByTime."""

from __future__ import annotations

from typing import Any

import click

from rmqkit.cli.admin._common import (
    Target,
    cluster_options,
    emit,
    format_ms,
    json_option,
    parse_time,
    print_json,
    where_options,
)
from rmqkit.client.admin import AdminClient


def register_groups(group: click.Group) -> None:
    for command in (update_sub_group, delete_sub_group, consumer_progress, consumer_connection,
                    producer_connection, reset_offset_by_time):  # fmt: skip
        group.add_command(command)


_GROUP = click.option("-g", "--groupName", "group", required=True, help="The group.")

# updateSubGroup's flags: mqadmin's letter, long name, and the SubscriptionGroupConfig field.
_GROUP_FIELDS = [
    ("-s", "--consumeEnable", "consume_enable", click.BOOL),
    ("-m", "--consumeFromMinEnable", "consume_from_min_enable", click.BOOL),
    ("-d", "--consumeBroadcastEnable", "consume_broadcast_enable", click.BOOL),
    ("-o", "--consumeMessageOrderly", "consume_message_orderly", click.BOOL),
    ("-q", "--retryQueueNums", "retry_queue_nums", click.IntRange(0, 64)),
    ("-r", "--retryMaxTimes", "retry_max_times", click.IntRange(-1, 1 << 31 - 1)),
    ("-i", "--brokerId", "broker_id", click.IntRange(0)),
    ("-w", "--whichBrokerWhenConsumeSlowly", "which_broker_when_consume_slowly", click.IntRange(0)),
    ("-a", "--notifyConsumerIdsChangedEnable", "notify_consumer_ids_changed_enable", click.BOOL),
]


def _group_field_options(command: Any) -> Any:
    for short, long, field, kind in reversed(_GROUP_FIELDS):
        command = click.option(short, long, field, type=kind, default=None,
                               help="Unchanged when not given.")(command)  # fmt: skip
    return command


@click.command(name="updateSubGroup")
@cluster_options
@where_options
@_GROUP
@_group_field_options
def update_sub_group(
    target: Target, cluster: str | None, broker_addr: str | None, group: str, **fields: Any
) -> None:
    """Create a consumer group's settings, or change some of them, on one broker (-b) or on
    every master (-c, or neither). Settings not given keep their value; a new group starts
    from RocketMQ's defaults."""
    changes = {k: v for k, v in fields.items() if v is not None}
    addrs = target.run(lambda admin: admin.update_group(
        group, cluster=cluster, broker_addr=broker_addr, **changes))  # fmt: skip
    for addr in addrs:
        click.echo(f"create subscription group to {addr} success: {group}")


@click.command(name="deleteSubGroup")
@cluster_options
@where_options
@_GROUP
def delete_sub_group(
    target: Target, cluster: str | None, broker_addr: str | None, group: str
) -> None:
    """Delete a consumer group's settings, offsets and retry topic from one broker (-b) or from
    every master (-c, or neither)."""
    addrs = target.run(
        lambda admin: admin.delete_group(group, cluster=cluster, broker_addr=broker_addr)
    )
    for addr in addrs:
        click.echo(f"delete subscription group from {addr} success: {group}")


_PROGRESS_COLUMNS = [
    ("topic", "Topic"), ("brokerName", "Broker Name"), ("queueId", "QID"),
    ("brokerOffset", "Broker Offset"), ("consumerOffset", "Consumer Offset"), ("diff", "Diff"),
    ("lastTime", "LastTime"),
]  # fmt: skip
_GROUPS_COLUMNS = [
    ("group", "Group"), ("count", "Count"), ("type", "Type"), ("model", "Model"),
    ("diffTotal", "Diff Total"),
]  # fmt: skip


@click.command(name="consumerProgress")
@cluster_options
@click.option("-g", "--groupName", "group", default=None,
              help="One group, queue by queue (default: a line per group).")  # fmt: skip
@click.option("-t", "--topicName", "topic", default=None, help="Only this topic (with -g).")
@json_option
def consumer_progress(target: Target, group: str | None, topic: str | None, as_json: bool) -> None:
    """How far a group has consumed, queue by queue, and how far it is behind (Diff); without
    -g, every group the masters know, with its online clients and total lag."""
    if group is None:
        emit(target.run(_all_groups), _GROUPS_COLUMNS, as_json)
        return
    progress = target.run(lambda admin: admin.consumer_progress(group, topic))
    if not progress:
        raise click.ClickException(f"no broker knows consumer group {group!r}")
    rows = [
        {"topic": p.queue.topic, "brokerName": p.queue.broker_name, "queueId": p.queue.queue_id,
         "brokerOffset": p.broker_offset, "consumerOffset": p.consumer_offset, "diff": p.lag,
         "lastTime": p.last_timestamp if as_json else format_ms(p.last_timestamp)}
        for p in progress
    ]  # fmt: skip
    emit(rows, _PROGRESS_COLUMNS, as_json)
    if not as_json:
        click.echo(f"\nDiff Total: {sum(p.lag for p in progress)}")


async def _all_groups(admin: AdminClient) -> list[dict[str, Any]]:
    return [
        {"group": g.group, "count": g.count, "type": g.consume_type, "model": g.message_model,
         "diffTotal": g.diff_total}
        for g in await admin.group_summaries()
    ]  # fmt: skip


_CONNECTION_COLUMNS = [
    ("clientId", "ClientId"), ("clientAddr", "ClientAddr"), ("language", "Language"),
    ("version", "Version"),
]  # fmt: skip


@click.command(name="consumerConnection")
@cluster_options
@_GROUP
@json_option
def consumer_connection(target: Target, group: str, as_json: bool) -> None:
    """A consumer group's online clients, what it subscribes to, and how it consumes."""
    info: dict[str, Any] = target.run(lambda admin: admin.consumer_connections(group))
    if as_json:
        print_json(info)
        return
    emit(info.get("connectionSet", []), _CONNECTION_COLUMNS, False)
    click.echo("")
    subs = list((info.get("subscriptionTable") or {}).values())
    emit([{"topic": s.get("topic"), "subString": s.get("subString"),
           "type": s.get("expressionType", "TAG")} for s in subs],
         [("topic", "Topic"), ("subString", "SubExpression"), ("type", "Type")], False)  # fmt: skip
    click.echo("")
    for key, title in (("consumeType", "ConsumeType"), ("messageModel", "MessageModel"),
                       ("consumeFromWhere", "ConsumeFromWhere")):  # fmt: skip
        click.echo(f"{title}: {info.get(key, '-')}")


@click.command(name="producerConnection")
@cluster_options
@_GROUP
@json_option
def producer_connection(target: Target, group: str, as_json: bool) -> None:
    """A producer group's clients connected to the masters, one line per broker and client."""
    rows: list[dict[str, Any]] = target.run(lambda admin: admin.producer_connections(group))
    if not rows and not as_json:
        raise click.ClickException(f"no producer of group {group!r} is connected to a master")
    emit(rows, [("brokerAddr", "Broker Addr"), *_CONNECTION_COLUMNS], as_json)


@click.command(name="resetOffsetByTime")
@cluster_options
@_GROUP
@click.option("-t", "--topic", required=True)
@click.option("-s", "--timestamp", "when", required=True,
              help="now, milliseconds since the epoch, or yyyy-MM-dd#HH:mm:ss:SSS.")  # fmt: skip
@json_option
def reset_offset_by_time(target: Target, group: str, topic: str, when: str, as_json: bool) -> None:
    """Move a group's offsets on a topic to the first message stored at or after a time; its
    online consumers are told and pull from there."""
    ts = parse_time(when)
    table = target.run(lambda admin: admin.reset_offset_by_time(group, topic, ts))
    rows = [
        {"brokerName": q.broker_name, "queueId": q.queue_id, "offset": off}
        for q, off in sorted(table.items(), key=lambda e: (e[0].broker_name, e[0].queue_id))
    ]
    emit(rows, [("brokerName", "Broker Name"), ("queueId", "QID"), ("offset", "Offset")],
         as_json)  # fmt: skip
