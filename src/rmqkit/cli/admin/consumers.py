"""`rmqkit admin consumerStatus`: what a consumer group's clients say of themselves (their
running info, asked through a broker), with mqadmin's checks of the group; and the push of one
message to one client that `queryMsgById -g -d` and `queryMsgByUniqueKey -g -d` make."""

from __future__ import annotations

import time
from typing import Any

import click

from rmqkit.cli.admin._common import (
    Target,
    cluster_options,
    emit,
    format_ms,
    json_option,
    print_json,
)
from rmqkit.client.admin import AdminClient, ConsumerRunningInfo

BLOCKED_AFTER_MS = 60_000
"""A queue with messages waiting that nothing consumed for this long is reported as blocked
(mqadmin's `analyzeProcessQueue` uses the same minute)."""


def register_consumers(group: click.Group) -> None:
    group.add_command(consumer_status)


@click.command(name="consumerStatus")
@cluster_options
@click.option("-g", "--consumerGroup", "group", required=True, help="The consumer group.")
@click.option("-i", "--clientId", "client_id", default=None,
              help="Only this client, shown in full.")  # fmt: skip
@click.option("-s", "--jstack", is_flag=True, help="With -i: also the client's stacks.")
@json_option
def consumer_status(
    target: Target, group: str, client_id: str | None, jstack: bool, as_json: bool
) -> None:
    """The running info of a consumer group's clients: the queues each holds, what waits in
    them, pull and consume rates; then whether the clients agree on the subscription and which
    queues look blocked."""

    async def work(admin: AdminClient) -> dict[str, ConsumerRunningInfo]:
        ids = [client_id] if client_id else [
            c["clientId"] for c in (await admin.consumer_connections(group))["connectionSet"]
        ]  # fmt: skip
        return {cid: await admin.consumer_running_info(group, cid, jstack=jstack) for cid in ids}

    infos: dict[str, ConsumerRunningInfo] = target.run(work)
    if as_json:
        print_json({cid: info.to_json() for cid, info in infos.items()})
        return
    if client_id:
        show_running_info(infos[client_id])
        return
    rows = [{"index": i, "clientId": cid, "version": info.properties.get("PROP_CLIENT_VERSION"),
             "queues": len(info.queues),
             "cached": sum(int(q.get("cachedMsgCount", 0)) for q in info.queues.values())}
            for i, (cid, info) in enumerate(sorted(infos.items()), 1)]  # fmt: skip
    emit(rows, [("index", "#Index"), ("clientId", "#ClientId"), ("version", "#Version"),
                ("queues", "#Queues"), ("cached", "#CachedMsgs")], False)  # fmt: skip
    click.echo("")
    for line in analyze(infos, int(time.time() * 1000)):
        click.echo(line)


def analyze(infos: dict[str, ConsumerRunningInfo], now_ms: int) -> list[str]:
    """mqadmin's verdicts on a group: one subscription or several, and the queues that hold
    messages nothing has consumed for a minute."""
    subs = {
        cid: sorted((s.get("topic"), s.get("subString")) for s in info.subscriptions)
        for cid, info in infos.items()
    }
    lines = (
        ["Same subscription in the same group of consumer"]
        if len({tuple(v) for v in subs.values()}) <= 1
        else ["WARN: Different subscription in the same group of consumer!!!"]
        + [f"  {cid}: {', '.join(f'{t} {e}' for t, e in v)}" for cid, v in sorted(subs.items())]
    )
    for cid, info in sorted(infos.items()):
        for mq, q in sorted(info.queues.items(), key=lambda kv: str(kv[0])):
            last = int(q.get("lastConsumeTimestamp", 0))
            if int(q.get("cachedMsgCount", 0)) > 0 and last and now_ms - last > BLOCKED_AFTER_MS:
                lines.append(
                    f"{cid} {mq.topic} {mq.broker_name} {mq.queue_id} can't consume for a "
                    f"while, maybe blocked, {now_ms - last}ms"
                )
    return lines


def show_running_info(info: ConsumerRunningInfo) -> None:
    """One client's running info in the sections of Java's `ConsumerRunningInfo.formatString`."""
    click.echo("#Consumer Properties#")
    for k, v in sorted(info.properties.items()):
        click.echo(f"{k:<40}: {v}")
    click.echo("\n#Consumer Subscription#")
    for i, s in enumerate(info.subscriptions, 1):
        click.echo(f"{i:03d} Topic: {s.get('topic'):<40} ClassFilter: false "
                   f"SubExpression: {s.get('subString')}")  # fmt: skip
    queues = sorted(info.queues.items(), key=lambda kv: str(kv[0]))
    rows: list[dict[str, Any]] = [
        {"topic": mq.topic, "broker": mq.broker_name, "queue": mq.queue_id,
         "commit": q.get("commitOffset"), "count": q.get("cachedMsgCount"),
         "min": q.get("cachedMsgMinOffset"), "max": q.get("cachedMsgMaxOffset"),
         "mib": q.get("cachedMsgSizeInMiB"), "locked": q.get("locked"),
         "pulled": format_ms(int(q.get("lastPullTimestamp", 0))),
         "consumed": format_ms(int(q.get("lastConsumeTimestamp", 0)))}
        for mq, q in queues
    ]  # fmt: skip
    click.echo("\n#Consumer Offset#")
    emit(rows, [("topic", "#Topic"), ("broker", "#Broker Name"), ("queue", "#QID"),
                ("commit", "#Consumer Offset")], False)  # fmt: skip
    click.echo("\n#Consumer MQ Detail#")
    emit(rows, [("topic", "#Topic"), ("queue", "#QID"), ("count", "#Cached"),
                ("min", "#Min"), ("max", "#Max"), ("mib", "#MiB"), ("locked", "#Locked"),
                ("pulled", "#Last Pull"), ("consumed", "#Last Consume")], False)  # fmt: skip
    click.echo("\n#Consumer RT&TPS#")
    emit([{"topic": t, **{k: _figure(v) for k, v in st.items()}}
          for t, st in sorted(info.status.items())],
         [("topic", "#Topic"), ("pullRT", "#Pull RT"), ("pullTPS", "#Pull TPS"),
          ("consumeRT", "#Consume RT"), ("consumeOKTPS", "#Consume OK TPS"),
          ("consumeFailedTPS", "#Consume Failed TPS"),
          ("consumeFailedMsgs", "#Failed Msgs (hour)")], False)  # fmt: skip
    if info.jstack:
        click.echo("\n#Consumer jstack#")
        click.echo(info.jstack)


def _figure(v: Any) -> Any:
    return round(v, 2) if isinstance(v, float) else v


def push_options(command: Any) -> Any:
    """-g and -d of queryMsgById and queryMsgByUniqueKey: send the message to one client."""
    command = click.option("-d", "--clientId", "client_id", default=None,
                           help="With -g: have this client consume the message "
                                "(its listener runs; nothing is committed).")(command)  # fmt: skip
    return click.option("-g", "--consumerGroup", "consumer_group", default=None,
                        help="With -d: the client's group.")(command)  # fmt: skip


def push_to_client(
    target: Target, group: str | None, client_id: str | None, msg_id: str, topic: str | None
) -> dict[str, Any] | None:
    """CONSUME_MESSAGE_DIRECTLY when both -g and -d were given; the result, printed."""
    if not group and not client_id:
        return None
    if not (group and client_id):
        raise click.UsageError("-g and -d go together: the group and the client to push to")
    result: dict[str, Any] = target.run(
        lambda admin: admin.consume_message_directly(group, client_id, msg_id, topic)
    )
    return result
