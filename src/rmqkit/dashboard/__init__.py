"""The web dashboard (`rmqkit dashboard`): a cluster's brokers with their rates, topics with
their queues, consumer groups with their lag, messages by key or id with their trace, and the
everyday changes (create a topic, reset a group's offsets, send a message, resend a dead
letter), all over RocketMQ's admin requests through `AdminClient`.
"""

from rmqkit.dashboard.app import Dashboard

__all__ = ["Dashboard"]
