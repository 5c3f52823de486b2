"""rmqkit.testing."""
