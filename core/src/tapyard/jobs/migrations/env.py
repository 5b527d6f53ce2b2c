"""Alembic's environment for the control plane: migrations run on the connection
tapyard hands over (``config.attributes["connection"]``), inside its transaction."""

from __future__ import annotations

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=None, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
