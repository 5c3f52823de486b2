"""rmqkit.cli."""
