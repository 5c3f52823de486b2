"""`rmqkit admin` commands about messages: queryMsgById, queryMsgByKey, queryMsgByUniqueKey,
queryMsgByOffset, queryMsgTraceById, printMsg, sendMessage."""

from __future__ import annotations

import time
from pathlib import Path
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
)
from rmqkit.cli.admin.consumers import push_options, push_to_client
from rmqkit.client.message import Message, MessageQueue, SendResult
from rmqkit.client.producer import Producer
from rmqkit.client.trace import TRACE_TOPIC, MessageTrace
from rmqkit.common.properties import SYSTEM_KEYS
from rmqkit.errors import CorruptRecordError
from rmqkit.protocol.message_id import decode_offset_msg_id
from rmqkit.protocol.record import StoredMessage, format_host


def register_messages(group: click.Group) -> None:
    for command in (query_msg_by_id, query_msg_by_key, query_msg_by_unique_key,
                    query_msg_by_offset, query_msg_trace_by_id, print_msg,
                    send_message):  # fmt: skip
        group.add_command(command)


_BODY_FILE = click.option(
    "--body-file", type=click.Path(dir_okay=False, writable=True, path_type=Path), default=None,
    help="Also write the body, as stored bytes, to this file.",
)  # fmt: skip


@click.command(name="queryMsgById")
@cluster_options
@click.option("-i", "--msgId", "msg_id", required=True,
              help="The offset message id a send returned (offsetMsgId).")  # fmt: skip
@push_options
@_BODY_FILE
@json_option
def query_msg_by_id(
    target: Target, msg_id: str, consumer_group: str | None, client_id: str | None,
    body_file: Path | None, as_json: bool,
) -> None:  # fmt: skip
    """A message by its offset message id, asked of the broker that stored it; with -g and -d,
    also pushed to that consumer client, whose listener runs on it."""
    try:
        decode_offset_msg_id(msg_id)
    except CorruptRecordError as exc:
        raise click.BadParameter(
            f"{exc.reason}. A client's message id (UNIQ_KEY) is looked up with "
            "queryMsgByUniqueKey -i ID -t TOPIC",
            param_hint="'-i'",
        ) from None
    msg: StoredMessage = target.run(lambda admin: admin.view_message(msg_id))
    pushed = push_to_client(target, consumer_group, client_id, msg_id, None)
    _show([msg], body_file, as_json, pushed)


@click.command(name="queryMsgByOffset")
@cluster_options
@click.option("-t", "--topic", required=True)
@click.option("-b", "--brokerName", "broker_name", required=True)
@click.option("-i", "--queueId", "queue_id", type=click.IntRange(0), required=True)
@click.option("-o", "--offset", type=click.IntRange(0), required=True)
@_BODY_FILE
@json_option
def query_msg_by_offset(
    target: Target, topic: str, broker_name: str, queue_id: int, offset: int,
    body_file: Path | None, as_json: bool,
) -> None:  # fmt: skip
    """The message at one offset of one queue."""
    msg = target.run(lambda admin: admin.message_at(topic, broker_name, queue_id, offset))
    _show([msg], body_file, as_json)


@click.command(name="queryMsgByUniqueKey")
@cluster_options
@click.option("-i", "--msgId", "msg_id", required=True,
              help="The message id a send returned (UNIQ_KEY).")  # fmt: skip
@click.option("-t", "--topic", required=True)
@push_options
@_BODY_FILE
@json_option
def query_msg_by_unique_key(
    target: Target, msg_id: str, topic: str, consumer_group: str | None, client_id: str | None,
    body_file: Path | None, as_json: bool,
) -> None:  # fmt: skip
    """A message by the id its producer gave it, searched in the topic's index; with -g and -d,
    also pushed to that consumer client, whose listener runs on it."""
    found = target.run(lambda admin: admin.query_by_key(topic, msg_id, max_num=32))
    found = [m for m in found if m.uniq_key == msg_id]
    if not found:
        raise click.ClickException(f"no message of topic {topic!r} has the id {msg_id}")
    pushed = push_to_client(target, consumer_group, client_id, msg_id, topic)
    _show(found, body_file, as_json, pushed)


@click.command(name="queryMsgByKey")
@cluster_options
@click.option("-t", "--topic", required=True)
@click.option("-k", "--msgKey", "key", required=True, help="A business key (KEYS) of the message.")
@click.option("-b", "--beginTimestamp", "begin", default="0",
              help="Stored at or after (now, ms, yyyy-MM-dd#HH:mm:ss:SSS).")  # fmt: skip
@click.option("-e", "--endTimestamp", "end", default="now", help="Stored at or before.")
@click.option("-m", "--maxNum", "max_num", type=click.IntRange(1, 64 * 1024), default=64,
              show_default=True, help="At most this many, per broker.")  # fmt: skip
@json_option
def query_msg_by_key(
    target: Target, topic: str, key: str, begin: str, end: str, max_num: int, as_json: bool
) -> None:
    """Messages by a business key, from every broker of the topic."""
    begin_ms, end_ms = parse_time(begin), parse_time(end)
    found = target.run(lambda admin: admin.query_by_key(
        topic, key, max_num=max_num, begin_ms=begin_ms, end_ms=end_ms))  # fmt: skip
    matching = [m for m in found if key in m.keys or m.uniq_key == key]  # hashes can collide
    rows = [
        {"msgId": m.msg_id, "offsetMsgId": m.offset_msg_id, "queueId": m.queue_id,
         "queueOffset": m.queue_offset,
         "storeTime": m.store_timestamp if as_json else format_ms(m.store_timestamp)}
        for m in sorted(matching, key=lambda m: m.store_timestamp)
    ]  # fmt: skip
    emit(rows, [("msgId", "Message ID"), ("offsetMsgId", "Offset Message ID"), ("queueId", "QID"),
                ("queueOffset", "Offset"), ("storeTime", "Store Time")], as_json)  # fmt: skip


@click.command(name="printMsg")
@cluster_options
@click.option("-t", "--topic", required=True)
@click.option("-b", "--beginTimestamp", "begin", default="0",
              help="Stored at or after (now, ms, yyyy-MM-dd#HH:mm:ss:SSS).")  # fmt: skip
@click.option("-e", "--endTimestamp", "end", default="now", help="Stored at or before.")
@click.option("-d", "--printBody", "print_body", type=click.BOOL, default=True,
              show_default=True, help="Print each body (as UTF-8 text).")  # fmt: skip
@click.option("-m", "--maxNum", "max_num", type=click.IntRange(1, 1_000_000), default=2000,
              show_default=True, help="At most this many, the oldest first.")  # fmt: skip
@json_option
def print_msg(
    target: Target, topic: str, begin: str, end: str, print_body: bool, max_num: int,
    as_json: bool,
) -> None:  # fmt: skip
    """The messages of a topic stored in a time range, from every queue, oldest first."""
    begin_ms, end_ms = parse_time(begin), parse_time(end)
    found, more = target.run(lambda admin: admin.messages_between(
        topic, begin_ms, end_ms, max_num=max_num))  # fmt: skip
    rows = [
        {"msgId": m.msg_id, "queueId": m.queue_id, "queueOffset": m.queue_offset,
         "storeTime": m.store_timestamp if as_json else format_ms(m.store_timestamp),
         "tags": m.tags, "keys": " ".join(m.keys),
         **({"body": m.body.decode("utf-8", "replace")} if print_body else {})}
        for m in found
    ]  # fmt: skip
    columns = [("msgId", "Message ID"), ("queueId", "QID"), ("queueOffset", "Offset"),
               ("storeTime", "Store Time"), ("tags", "Tags"), ("keys", "Keys")]  # fmt: skip
    emit(rows, [*columns, ("body", "Body")] if print_body else columns, as_json)
    if more:
        click.echo(f"more than {max_num} messages are in the range; the first {max_num} are "
                   "printed (-m for more, or a narrower range)", err=True)  # fmt: skip


_TRACE_COLUMNS = [
    ("type", "Type"), ("group", "Group"), ("clientHost", "ClientHost"), ("time", "Time"),
    ("costMs", "CostTimes(ms)"), ("retryTimes", "RetryTimes"), ("status", "Status"),
]  # fmt: skip


@click.command(name="queryMsgTraceById")
@cluster_options
@click.option("-i", "--msgId", "msg_id", required=True, help="The message id a send returned.")
@click.option("-t", "--traceTopic", "trace_topic", default=TRACE_TOPIC, show_default=True,
              help="The topic the clients wrote their traces to.")  # fmt: skip
@json_option
def query_msg_trace_by_id(target: Target, msg_id: str, trace_topic: str, as_json: bool) -> None:
    """Where a message went, from its clients' message traces: the send that stored it, each
    delivery to each consumer group (retries included), transaction ends, dead letters."""
    trace: MessageTrace = target.run(
        lambda admin: admin.query_trace(msg_id, trace_topic=trace_topic)
    )
    if not (trace.sends or trace.consumes or trace.transactions):
        raise click.ClickException(
            f"no trace of message {msg_id} in {trace_topic} (was it sent with message trace on?)"
        )
    rows = trace.timeline()
    if not as_json:
        for row in rows:
            row["time"] = format_ms(row["time"])
    emit(rows, _TRACE_COLUMNS, as_json)


def _show(
    msgs: list[StoredMessage], body_file: Path | None, as_json: bool,
    pushed: dict[str, Any] | None = None,
) -> None:  # fmt: skip
    """Print messages; `pushed`, a client's ConsumeMessageDirectlyResult, after the first."""
    if body_file is not None:
        body_file.write_bytes(msgs[0].body)
    described = [_describe(m) for m in msgs]
    if pushed is not None:
        described[0]["ConsumeMessageDirectlyResult"] = pushed
    if as_json:
        print_json(described if len(described) > 1 else described[0])
        return
    for i, d in enumerate(described):
        if i:
            click.echo("")
        for key, value in d.items():
            if key in ("body", "ConsumeMessageDirectlyResult"):
                continue
            click.echo(f"{key + ':':<20} {value}")
        body = msgs[i].body
        try:
            click.echo(f"{'Message Body:':<20} {body.decode('utf-8')}")
        except UnicodeDecodeError:
            click.echo(f"{'Message Body:':<20} {len(body)} bytes, not UTF-8 text "
                       "(--body-file writes them out)")  # fmt: skip
        if body_file is not None and i == 0:
            click.echo(f"{'Message Body Path:':<20} {body_file}")
        if pushed is not None and i == 0:
            click.echo(f"{'Consume Result:':<20} {pushed.get('consumeResult')} in "
                       f"{pushed.get('spentTimeMills')} ms"
                       + (f" ({pushed['remark']})" if pushed.get("remark") else ""))  # fmt: skip


def _describe(m: StoredMessage) -> dict[str, Any]:
    user = {k: v for k, v in m.properties.items() if k not in SYSTEM_KEYS}
    return {
        "OffsetID": m.offset_msg_id, "MsgId": m.msg_id, "Topic": m.topic,
        "Tags": m.tags or "", "Keys": " ".join(m.keys), "Queue ID": m.queue_id,
        "Queue Offset": m.queue_offset, "CommitLog Offset": m.commit_log_offset,
        "Reconsume Times": m.reconsume_times, "Born Timestamp": format_ms(m.born_timestamp),
        "Store Timestamp": format_ms(m.store_timestamp), "Born Host": m.born_host_str,
        "Store Host": format_host(m.store_host), "System Flag": m.sys_flag,
        "Properties": dict(m.properties), "User Properties": user,
        "body": m.body.decode("utf-8", "replace"),
    }  # fmt: skip




@click.command(name="sendMessage")
@cluster_options
@click.option("-t", "--topic", required=True)
@click.option("-p", "--body", required=True, help="The body, as UTF-8 text.")
@click.option("-k", "--key", "keys", default=None, help="Business keys, separated by spaces.")
@click.option("-c", "--tags", default=None)
@click.option("-b", "--broker", "broker_name", default=None, help="Send to this broker (by name).")
@click.option("-i", "--qid", "queue_id", type=click.IntRange(0), default=None,
              help="Send to this queue (with -b).")  # fmt: skip
@json_option
def send_message(
    target: Target, topic: str, body: str, keys: str | None, tags: str | None,
    broker_name: str | None, queue_id: int | None, as_json: bool,
) -> None:  # fmt: skip
    """Send one message, as a producer would, and print where it was stored."""
    if (broker_name is None) != (queue_id is None):
        raise click.UsageError("-b and -i go together (one queue of one broker)")
    msg = Message(topic, body.encode("utf-8"), tags=tags, keys=(keys or "").split())
    queue = None
    if broker_name is not None and queue_id is not None:
        queue = MessageQueue(topic, broker_name, queue_id)

    async def work() -> SendResult:
        async with Producer(
            "RMQKIT_ADMIN_PRODUCER", target.namesrv, instance_name=f"ADMIN-{time.time_ns()}",
            credentials=target.credentials, tls=target.tls,
        ) as producer:  # fmt: skip
            return await producer.send(msg, queue=queue)

    r = target.run_async(work)
    row = {"brokerName": r.queue.broker_name, "queueId": r.queue.queue_id,
           "status": r.status.name, "msgId": r.msg_id, "offsetMsgId": r.offset_msg_id}  # fmt: skip
    emit([row], [("brokerName", "Broker Name"), ("queueId", "QID"), ("status", "Send Result"),
                 ("msgId", "MsgId"), ("offsetMsgId", "Offset MsgId")], as_json)  # fmt: skip
