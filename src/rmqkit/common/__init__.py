"""Shared vocabulary: message properties, names, hashing and type aliases (no I/O)."""
