"""rmqkit.client."""
