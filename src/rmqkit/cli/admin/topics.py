"""`rmqkit admin` commands about topics: topicList, topicRoute, topicStatus, topicClusterList,
updateTopic, deleteTopic."""

from __future__ import annotations

import click

from rmqkit.cli.admin._common import (
    Target,
    cluster_options,
    emit,
    format_ms,
    json_option,
    print_json,
    where_options,
)
from rmqkit.client.admin import AdminClient, QueueStatus
from rmqkit.common.names import topic_problem
from rmqkit.common.topic import PERM_READ, PERM_WRITE, perm_text
from rmqkit.protocol.route import TopicRouteData


def register_topics(group: click.Group) -> None:
    for command in (topic_list, topic_route, topic_status, topic_cluster_list, update_topic,
                    delete_topic):  # fmt: skip
        group.add_command(command)


_TOPIC = click.option("-t", "--topic", required=True, help="The topic.")


@click.command(name="topicList")
@cluster_options
@click.option("-c", "--clusterName", "cluster", default=None, help="Only this cluster's topics.")
@json_option
def topic_list(target: Target, cluster: str | None, as_json: bool) -> None:
    """Every topic the NameServers know, one a line."""
    topics = target.run(lambda admin: admin.topics(cluster))
    if as_json:
        print_json(topics)
    else:
        for t in topics:
            click.echo(t)


@click.command(name="topicRoute")
@cluster_options
@_TOPIC
def topic_route(target: Target, topic: str) -> None:
    """The topic's route as the NameServer gives it to clients (JSON)."""
    route: TopicRouteData = target.run(lambda admin: admin.route(topic))
    print_json(route.to_json())


_STATUS_COLUMNS = [
    ("brokerName", "Broker Name"), ("queueId", "QID"), ("minOffset", "Min Offset"),
    ("maxOffset", "Max Offset"), ("lastUpdated", "Last Updated"),
]  # fmt: skip


@click.command(name="topicStatus")
@cluster_options
@_TOPIC
@json_option
def topic_status(target: Target, topic: str, as_json: bool) -> None:
    """Each queue of the topic: its min and max offset and when it last stored a message."""
    status: list[QueueStatus] = target.run(lambda admin: admin.topic_status(topic))
    rows = [
        {"brokerName": s.queue.broker_name, "queueId": s.queue.queue_id,
         "minOffset": s.min_offset, "maxOffset": s.max_offset,
         "lastUpdated": s.last_update_timestamp if as_json else format_ms(s.last_update_timestamp)}
        for s in status
    ]  # fmt: skip
    emit(rows, _STATUS_COLUMNS, as_json)


@click.command(name="topicClusterList")
@cluster_options
@_TOPIC
def topic_cluster_list(target: Target, topic: str) -> None:
    """The clusters that serve the topic, one a line."""
    for name in target.run(lambda admin: admin.topic_clusters(topic)):
        click.echo(name)


@click.command(name="updateTopic")
@cluster_options
@where_options
@_TOPIC
@click.option("-r", "--readQueueNums", "read_queues", type=click.IntRange(1, 1024), default=8,
              show_default=True)  # fmt: skip
@click.option("-w", "--writeQueueNums", "write_queues", type=click.IntRange(1, 1024), default=8,
              show_default=True)  # fmt: skip
@click.option("-p", "--perm", type=click.Choice(["2", "4", "6"]), default="6", show_default=True,
              help="2 write only, 4 read only, 6 read and write.")  # fmt: skip
@click.option("-o", "--order", type=click.BOOL, default=False, show_default=True,
              help="An ordered topic (true/false).")  # fmt: skip
def update_topic(
    target: Target, cluster: str | None, broker_addr: str | None, topic: str,
    read_queues: int, write_queues: int, perm: str, order: bool,
) -> None:  # fmt: skip
    """Create a topic, or change its queues and permission, on one broker (-b) or on every
    master (-c, or neither)."""
    problem = topic_problem(topic)
    if problem:
        raise click.BadParameter(problem, param_hint="'-t'")
    addrs = target.run(lambda admin: admin.create_topic(
        topic, cluster=cluster, broker_addr=broker_addr, read_queues=read_queues,
        write_queues=write_queues, perm=int(perm), order=order,
    ))  # fmt: skip
    for addr in addrs:
        click.echo(
            f"create topic to {addr} success: {topic} read {read_queues} write {write_queues} "
            f"perm {perm_text(int(perm) & (PERM_READ | PERM_WRITE))} order {str(order).lower()}"
        )


@click.command(name="deleteTopic")
@cluster_options
@_TOPIC
@click.option("-c", "--clusterName", "cluster", default=None,
              help="Only from this cluster's masters (default: every cluster).")  # fmt: skip
def delete_topic(target: Target, topic: str, cluster: str | None) -> None:
    """Delete a topic from the masters and from the NameServers."""

    async def work(admin: AdminClient) -> None:
        await admin.write_addrs(cluster)  # a cluster with no master is an error, not a no-op
        await admin.delete_topic(topic, cluster)

    target.run(work)
    where = f"cluster {cluster}" if cluster else "every cluster"
    click.echo(f"delete topic {topic} from {where} and the NameServers success")
