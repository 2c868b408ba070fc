"""Persistence: the backend interface and its SQLite implementation."""
