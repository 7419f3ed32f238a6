"""parley_chat.migrations.versions: the revisions (Alembic skips this __init__.py)."""
