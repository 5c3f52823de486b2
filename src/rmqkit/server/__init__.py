"""rmqkit.server."""
