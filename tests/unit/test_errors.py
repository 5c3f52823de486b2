"""The error tree keyed by RocketMQ's response codes."""

from __future__ import annotations

from rmqkit.errors import BrokerResponseError, TopicNotExistError, error_for_code
from rmqkit.protocol.codes import ResponseCode


def test_a_code_with_its_own_class_gets_it() -> None:
    assert error_for_code(ResponseCode.TOPIC_NOT_EXIST) is TopicNotExistError


def test_any_other_rocketmq_code_is_named_in_the_error() -> None:
    cls = error_for_code(ResponseCode.CONSUMER_NOT_ONLINE)
    assert issubclass(cls, BrokerResponseError) and cls is not BrokerResponseError
    assert cls.__name__ == "ConsumerNotOnlineError"
    assert error_for_code(ResponseCode.CONSUMER_NOT_ONLINE) is cls  # made once
    exc = cls("the consumer group[G] not online", addr="127.0.0.1:10911")
    assert exc.code == ResponseCode.CONSUMER_NOT_ONLINE
    assert str(exc).startswith(f"CONSUMER_NOT_ONLINE ({int(ResponseCode.CONSUMER_NOT_ONLINE)})")


def test_a_code_rocketmq_does_not_define_is_the_base_error() -> None:
    assert error_for_code(987_654) is BrokerResponseError
