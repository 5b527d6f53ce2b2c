"""runs.parent_id, runs.unit, runs.units: a run spread over several workers (``spread``).

A spread run (the parent) is split into units, each a run of its own
(``parent_id`` names the parent, ``unit`` says what it reads); ``units`` on the
parent counts them once it was split.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("parent_id", sa.Integer, nullable=True))
        batch.add_column(sa.Column("unit", sa.Text, nullable=True))
        batch.add_column(sa.Column("units", sa.Integer, nullable=True))
        batch.create_index("ix_runs_parent", ["parent_id"])


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_index("ix_runs_parent")
        batch.drop_column("units")
        batch.drop_column("unit")
        batch.drop_column("parent_id")
