"""Test helpers for rmqkit users and for rmqkit's own tests (public API)."""

from rmqkit.testing.polling import check_for

__all__ = ["check_for"]
