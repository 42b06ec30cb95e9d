"""Migration revisions, ``NNNN_<slug>.py``, one linear history (Alembic ignores this file)."""
