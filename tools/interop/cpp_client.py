"""The official C++ client (PyPI `rocketmq` 0.4.4, bundled librocketmq) driven by tests/interop.

Run it with the interpreter of its own venv (.interop/venv_cpp): `python cpp_client.py '<json>'`.
One process is one producer (sync sends) or one push consumer. Prints one JSON object a line
("event": ready | sent | message | error | closed). A consumer runs until its stdin closes, then
shuts down; after deadlineMs it exits with 3 whatever happens.

Producer messages may carry "delayTimeLevel"; "sent" reports sentAt (ms, once the send returned).
A consumer may take "retry": {"bodies"?: [...] (default every message), "times"?: n (default
forever)}: its callback answers RECONSUME_LATER to those messages, n times each (the client then
sends them back with CONSUMER_SEND_MSG_BACK). Each delivery is reported ("message", with at = ms,
reconsumeTimes and the action, "retry" or "ok").

With "accessKey" (and "secretKey", "onsChannel" default "ALIYUN"), the client is given session
credentials: librocketmq then signs its requests for a broker with aclEnable=true. Without it,
the client is set up exactly as before.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from typing import Any

from rocketmq.client import Message, MessageModel, Producer, PushConsumer, RecvMessage  # type: ignore
from rocketmq.exceptions import ffi_check  # type: ignore
from rocketmq.ffi import _CConsumeStatus, dll  # type: ignore

_out = threading.Lock()


def emit(**obj: Any) -> None:
    line = json.dumps(obj)
    with _out:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else value


def now_ms() -> int:
    return int(time.time() * 1000)


def credentials(client: Any, cfg: dict[str, Any]) -> None:
    """`set_session_credentials` when the config names an access key; nothing otherwise."""
    if "accessKey" in cfg:
        client.set_session_credentials(
            cfg["accessKey"], cfg.get("secretKey", ""), cfg.get("onsChannel", "ALIYUN")
        )


def produce(cfg: dict[str, Any]) -> None:
    producer = Producer(cfg["group"])
    producer.set_namesrv_addr(cfg["nameSrv"])
    credentials(producer, cfg)
    producer.start()
    for m in cfg["messages"]:
        msg = Message(cfg["topic"])
        msg.set_body(m["body"])
        if m.get("tag"):
            msg.set_tags(m["tag"])
        if m.get("keys"):
            msg.set_keys(m["keys"])
        if m.get("delayTimeLevel"):
            msg.set_delay_time_level(m["delayTimeLevel"])
        r = producer.send_sync(msg)
        emit(
            event="sent", body=m["body"], tag=m.get("tag", ""), status=r.status.name,
            msgId=r.msg_id, queueOffset=r.offset, sentAt=now_ms(),
        )  # fmt: skip
    producer.shutdown()
    emit(event="closed")


def consume(cfg: dict[str, Any]) -> None:
    model = MessageModel.BROADCASTING if cfg.get("broadcast") else MessageModel.CLUSTERING
    consumer = PushConsumer(cfg["group"], message_model=model)
    consumer.set_namesrv_addr(cfg["nameSrv"])
    credentials(consumer, cfg)
    consumer.set_thread_count(2)

    retry = cfg.get("retry")
    failed: dict[str, int] = {}

    def should_retry(body: str) -> bool:
        if retry is None or ("bodies" in retry and body not in retry["bodies"]):
            return False
        if "times" in retry and failed.get(body, 0) >= retry["times"]:
            return False
        failed[body] = failed.get(body, 0) + 1
        return True

    def on_message(_consumer: Any, handle: Any) -> int:
        msg = RecvMessage(handle)
        body = text(msg.body)
        retry_it = should_retry(body)
        emit(
            event="message", at=now_ms(), action="retry" if retry_it else "ok", topic=msg.topic,
            body=body, tags=text(msg.tags), keys=text(msg.keys), msgId=msg.id,
            queueId=msg.queue_id, queueOffset=msg.queue_offset,
            reconsumeTimes=msg.reconsume_times, bornTimestamp=msg.born_timestamp,
            storeTimestamp=msg.store_timestamp,
        )  # fmt: skip
        status = _CConsumeStatus.RECONSUME_LATER if retry_it else _CConsumeStatus.CONSUME_SUCCESS
        return int(status.value)

    # PushConsumer.subscribe wraps the callback so that it can only succeed or raise (and a raise
    # out of a ctypes callback is swallowed): register our own, which returns the status itself.
    ffi_check(dll.Subscribe(consumer._handle, cfg["topic"].encode(),
                            cfg.get("subExpression", "*").encode()))  # fmt: skip
    consumer._register_callback(on_message)
    consumer.start()
    emit(event="ready")
    sys.stdin.read()  # until the test closes our stdin
    consumer.shutdown()
    emit(event="closed")


def main() -> None:
    cfg = json.loads(sys.argv[1])

    def expire() -> None:
        emit(event="deadline")
        os._exit(3)

    timer = threading.Timer(cfg.get("deadlineMs", 60000) / 1000, expire)
    timer.daemon = True
    timer.start()
    try:
        produce(cfg) if cfg["role"] == "produce" else consume(cfg)
    except Exception as exc:
        emit(event="error", message=repr(exc))
        sys.stdout.flush()
        os._exit(1)
    sys.stdout.flush()
    # The library's native threads can keep a normal interpreter exit waiting.
    os._exit(0)


if __name__ == "__main__":
    main()
