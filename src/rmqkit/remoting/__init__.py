"""rmqkit.remoting."""
