"""parley_chat.migrations: Alembic's script directory for parley's schema.

A package so that it installs with the rest; Alembic reads env.py and versions/ by path
(server.store.migrate points it here), so nothing imports this module.
"""
