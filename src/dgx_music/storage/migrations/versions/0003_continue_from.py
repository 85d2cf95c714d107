"""What a generation continues: ``generations.continue_from``.

A continuation (``dgx-music generate --continue``, or ``continue_from`` in the API's create body)
names the generation whose track it extends. The column is nullable and has no foreign key: a
history row keeps what it continued after the source is deleted. Adding a nullable column is an
``ALTER TABLE ... ADD COLUMN`` on both backends, so SQLite's table is not rebuilt and the
triggers of migration 0002 stay.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("generations", sa.Column("continue_from", sa.Uuid(as_uuid=False), nullable=True))


def downgrade() -> None:
    # Not batch mode: a batch rebuild on SQLite would drop 0002's triggers. SQLite >= 3.35 drops a
    # column in place.
    op.drop_column("generations", "continue_from")
