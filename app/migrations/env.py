"""Alembic's environment: upgrade() hands it the connection to work on."""

from alembic import context

context.configure(connection=context.config.attributes["connection"])
with context.begin_transaction():
    context.run_migrations()
