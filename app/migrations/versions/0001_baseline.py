"""The previous release's schema (commit a235b76), the last made without Alembic.

A database with the app's tables but no alembic_version is stamped here and
upgraded from it; there is nothing to create.

Revision ID: 0001
Revises:
"""

revision = "0001"
down_revision = None


def upgrade() -> None:
    """A database at the baseline is already there."""
