"""The dashboard's form fields: what each takes, and the message when it is wrong."""

from __future__ import annotations

from datetime import datetime

import pytest

from rmqkit.dashboard import forms
from rmqkit.dashboard.forms import FormError


def test_text_is_trimmed_required_and_bounded() -> None:
    assert forms.text({"a": "  x "}, "a") == "x"
    assert forms.text({}, "a", required=False) == ""
    with pytest.raises(FormError, match="a is required"):
        forms.text({"a": "   "}, "a")
    with pytest.raises(FormError, match="a is 5 characters long; at most 4"):
        forms.text({"a": "12345"}, "a", max_len=4)


def test_topic_and_group_names_follow_rocketmqs_rules() -> None:
    assert forms.topic({"topic": "Order_1-%|x"}) == "Order_1-%|x"
    with pytest.raises(FormError, match="topic: the topic name 'a b' has illegal characters"):
        forms.topic({"topic": "a b"})
    with pytest.raises(FormError, match="group: the group name 'g/1' has illegal"):
        forms.group({"group": "g/1"})
    with pytest.raises(FormError, match="at most 127"):
        forms.group({"group": "g" * 128})


def test_integers_are_bounded_and_may_default() -> None:
    assert forms.integer({"n": "7"}, "n", 1, 8) == 7
    assert forms.integer({"n": ""}, "n", 1, 8, default=8) == 8
    with pytest.raises(FormError, match="n must be from 1 to 8, not 9"):
        forms.integer({"n": "9"}, "n", 1, 8)
    with pytest.raises(FormError, match="n must be a whole number from 1 to 8, not 'x'"):
        forms.integer({"n": "x"}, "n", 1, 8)
    with pytest.raises(FormError, match="whole number"):
        forms.integer({}, "n", 1, 8)  # no default: required


def test_a_checkbox_is_ticked_only_when_sent() -> None:
    assert forms.checkbox({"c": "on"}, "c") and not forms.checkbox({}, "c")
    assert not forms.checkbox({"c": "off"}, "c")


def test_timestamps_take_now_milliseconds_and_a_local_date_time() -> None:
    before = datetime.now().timestamp() * 1000
    assert before - 1000 <= forms.timestamp({"t": "now"}, "t") <= before + 60_000
    assert forms.timestamp({"t": "1700000000000"}, "t") == 1_700_000_000_000
    local = datetime(2026, 11, 22, 17, 30, 0)
    assert forms.timestamp({"t": "2026-11-22T17:30"}, "t") == int(local.timestamp() * 1000)
    with pytest.raises(FormError, match="t must be 'now', milliseconds"):
        forms.timestamp({"t": "yesterday"}, "t")


def test_a_deletion_needs_the_name_repeated() -> None:
    forms.confirm_deletion({"confirm": " Orders "}, "topic", "Orders")
    with pytest.raises(FormError, match=r"type the topic's name \(Orders\) to confirm"):
        forms.confirm_deletion({"confirm": "orders"}, "topic", "Orders")
    with pytest.raises(FormError, match="to confirm"):
        forms.confirm_deletion({}, "group", "g")
