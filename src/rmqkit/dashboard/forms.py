"""Reading the dashboard's HTML forms: each field checked, and a `FormError` that names the
field and says what it takes when it is wrong (the page shows it with HTTP 400)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import datetime

from rmqkit.common.names import topic_problem

Form = Mapping[str, str]


class FormError(ValueError):
    """A form field the dashboard cannot use; the message says which and why."""


def text(form: Form, name: str, *, required: bool = True, max_len: int = 4096) -> str:
    value = form.get(name, "").strip()
    if required and not value:
        raise FormError(f"{name} is required")
    if len(value) > max_len:
        raise FormError(f"{name} is {len(value)} characters long; at most {max_len} are taken")
    return value


def topic(form: Form, name: str = "topic") -> str:
    return _name(form, name, "topic name")


def group(form: Form, name: str = "group") -> str:
    """A group name follows the rules of a topic name (it names `%RETRY%<group>`)."""
    return _name(form, name, "group name")


def _name(form: Form, name: str, noun: str) -> str:
    value = text(form, name)
    problem = topic_problem(value)
    if problem is not None:
        raise FormError(f"{name}: {problem.replace('topic name', noun)}")
    return value


def confirm_deletion(form: Form, what: str, name: str) -> None:
    """A deletion goes ahead only when the form's `confirm` field repeats the name."""
    if form.get("confirm", "").strip() != name:
        raise FormError(f"type the {what}'s name ({name}) to confirm its deletion")


def integer(form: Form, name: str, lo: int, hi: int, default: int | None = None) -> int:
    raw = form.get(name, "").strip()
    if not raw and default is not None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise FormError(f"{name} must be a whole number from {lo} to {hi}, not {raw!r}") from None
    if not lo <= value <= hi:
        raise FormError(f"{name} must be from {lo} to {hi}, not {value}")
    return value


def checkbox(form: Form, name: str) -> bool:
    """An HTML checkbox: sent ("on") when ticked, absent when not."""
    return form.get(name, "") in ("on", "true", "1")


def timestamp(form: Form, name: str) -> int:
    """A point in time, in ms since the epoch: `now`, milliseconds, or what an HTML
    `datetime-local` input sends (`YYYY-MM-DDTHH:MM[:SS[.fff]]`, local time)."""
    raw = text(form, name)
    if raw == "now":
        return int(time.time() * 1000)
    if raw.isdigit():
        return int(raw)
    try:
        return int(datetime.fromisoformat(raw).timestamp() * 1000)
    except ValueError:
        raise FormError(
            f"{name} must be 'now', milliseconds since the epoch, or a date and time "
            f"(2026-11-22T17:30:00), not {raw!r}"
        ) from None
