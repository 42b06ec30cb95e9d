"""Alembic migrations of the labmesh schema (``servicekit.db.metadata``); run with ``servicekit.db.migrate``."""
