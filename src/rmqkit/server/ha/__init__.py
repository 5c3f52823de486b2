"""Master/slave replication of the CommitLog (RocketMQ 4.x `HAService`): `master.py` serves
slaves, `slave.py` copies from a master; the frames are in `rmqkit.protocol.ha`."""

from rmqkit.server.ha.master import HAConnection, HAService, SlaveStatus
from rmqkit.server.ha.slave import HAClient

__all__ = ["HAClient", "HAConnection", "HAService", "SlaveStatus"]
