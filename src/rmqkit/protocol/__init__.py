"""Sans-IO RocketMQ wire formats: codes, the stored record, message ids, batch bodies."""
