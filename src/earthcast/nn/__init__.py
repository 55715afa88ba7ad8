"""Reusable neural-network building blocks (no Lightning, no I/O)."""
