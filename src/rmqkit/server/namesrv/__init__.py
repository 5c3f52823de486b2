"""The NameServer: broker registration and expiry, topic routes, KV config (RocketMQ's namesrv)."""

from rmqkit.server.namesrv.namesrv import NameServer, NameServerSettings
from rmqkit.server.namesrv.route_table import RouteTable

__all__ = ["NameServer", "NameServerSettings", "RouteTable"]
