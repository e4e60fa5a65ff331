"""Runs keep the event that started them: `runs.trigger_event`.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01

A webhook delivery's payload, headers and body (the `trigger` the run's templates read) are
recorded with its run before the delivery is answered: the run can start after a restart, and
the worker reads the event from here rather than from the flow run's parameters.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("trigger_event", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("trigger_event")
