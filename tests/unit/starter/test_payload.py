"""Payload conversion by annotation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from pydantic import BaseModel

from rmqkit.starter.payload import PayloadError, PayloadType, encode_payload


class Order(BaseModel):
    id: str
    qty: int


@dataclass
class Point:
    x: int
    y: int


def test_encode_by_type() -> None:
    assert encode_payload(b"raw") == b"raw"
    assert encode_payload("héllo") == "héllo".encode()
    assert encode_payload(Order(id="a", qty=1)) == b'{"id":"a","qty":1}'
    assert encode_payload(Point(1, 2)) == b'{"x":1,"y":2}'
    assert encode_payload({"o": Order(id="b", qty=2)}) == b'{"o":{"id":"b","qty":2}}'
    with pytest.raises(PayloadError, match="cannot serialize"):
        encode_payload(object())


@pytest.mark.parametrize(
    ("annotation", "body", "expected"),
    [
        (bytes, b"\xff", b"\xff"),
        (str, b"abc", "abc"),
        (Order, b'{"id":"a","qty":"3"}', Order(id="a", qty=3)),
        (Point, b'{"x":1,"y":2}', Point(1, 2)),
        (dict[str, int], b'{"a":1}', {"a": 1}),
        (list[Order], b'[{"id":"a","qty":1}]', [Order(id="a", qty=1)]),
    ],
)
def test_decode_by_annotation(annotation: Any, body: bytes, expected: Any) -> None:
    assert PayloadType(annotation).decode(body) == expected


def test_decode_errors_name_the_type_and_field() -> None:
    with pytest.raises(PayloadError, match=r"Order: 1 error\(s\): qty: Field required"):
        PayloadType(Order).decode(b'{"id":"a"}')
    with pytest.raises(PayloadError, match="Point"):
        PayloadType(Point).decode(b"not json")
    with pytest.raises(PayloadError):
        PayloadType(str).decode(b"\xff\xfe")
