"""Request processors, one module per family: send, pull, consumer management, admin."""
