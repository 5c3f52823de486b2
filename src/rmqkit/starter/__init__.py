"""rmqkit.starter."""
