"""The official C++ client (PyPI `rocketmq` 0.4.4, bundled librocketmq) driven by tests/interop.

Run it with the interpreter of its own venv (.interop/venv_cpp): `python cpp_client.py '<json>'`.
One process is one producer (sync sends) or one push consumer. Prints one JSON object a line
("event": ready | sent | message | error | closed). A consumer runs until its stdin closes, then
shuts down; after deadlineMs it exits with 3 whatever happens.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from typing import Any

from rocketmq.client import Message, MessageModel, Producer, PushConsumer  # type: ignore

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


def produce(cfg: dict[str, Any]) -> None:
    producer = Producer(cfg["group"])
    producer.set_namesrv_addr(cfg["nameSrv"])
    producer.start()
    for m in cfg["messages"]:
        msg = Message(cfg["topic"])
        msg.set_body(m["body"])
        if m.get("tag"):
            msg.set_tags(m["tag"])
        if m.get("keys"):
            msg.set_keys(m["keys"])
        r = producer.send_sync(msg)
        emit(
            event="sent", body=m["body"], tag=m.get("tag", ""), status=r.status.name,
            msgId=r.msg_id, queueOffset=r.offset,
        )  # fmt: skip
    producer.shutdown()
    emit(event="closed")


def consume(cfg: dict[str, Any]) -> None:
    model = MessageModel.BROADCASTING if cfg.get("broadcast") else MessageModel.CLUSTERING
    consumer = PushConsumer(cfg["group"], message_model=model)
    consumer.set_namesrv_addr(cfg["nameSrv"])
    consumer.set_thread_count(2)

    def on_message(msg: Any) -> None:
        emit(
            event="message", topic=msg.topic, body=text(msg.body), tags=text(msg.tags),
            keys=text(msg.keys), msgId=msg.id, queueId=msg.queue_id,
            queueOffset=msg.queue_offset, reconsumeTimes=msg.reconsume_times,
        )  # fmt: skip

    consumer.subscribe(cfg["topic"], on_message, cfg.get("subExpression", "*"))
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
