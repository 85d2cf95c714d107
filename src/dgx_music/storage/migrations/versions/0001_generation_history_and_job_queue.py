"""Generation history and job queue: the ``prompts`` and ``generations`` tables.

Revision ID: 0001
Revises:
Create Date: 2026-05-10
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATUSES = ("pending", "processing", "completed", "failed", "cancelled")


def upgrade() -> None:
    op.create_table(
        "prompts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("text_sha256", sa.String(length=64), nullable=False),
        sa.Column("use_count", sa.Integer(), nullable=False),
        sa.Column("first_used_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("use_count >= 0", name=op.f("ck_prompts_use_count_not_negative")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_prompts")),
        sa.UniqueConstraint("text_sha256", name=op.f("uq_prompts_text_sha256")),
    )
    op.create_table(
        "generations",
        sa.Column("id", sa.Uuid(as_uuid=False), nullable=False),
        sa.Column("prompt_id", sa.Integer(), nullable=False),
        sa.Column("model", sa.String(length=1024), nullable=False),
        sa.Column("device", sa.String(length=32), nullable=True),
        sa.Column("duration", sa.Float(), nullable=False),
        sa.Column("seed", sa.BigInteger(), nullable=True),
        sa.Column("temperature", sa.Float(), nullable=False),
        sa.Column("top_k", sa.Integer(), nullable=False),
        sa.Column("top_p", sa.Float(), nullable=False),
        sa.Column("guidance_scale", sa.Float(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("worker_id", sa.String(length=255), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("progress", sa.Float(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("generation_seconds", sa.Float(), nullable=True),
        sa.Column("file_path", sa.String(length=512), nullable=True),
        sa.Column("file_size", sa.BigInteger(), nullable=True),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column("sample_rate", sa.Integer(), nullable=True),
        sa.Column("channels", sa.Integer(), nullable=True),
        sa.Column("actual_duration", sa.Float(), nullable=True),
        sa.Column("lufs", sa.Float(), nullable=True),
        sa.Column("true_peak", sa.Float(), nullable=True),
        sa.Column("tempo_bpm", sa.Float(), nullable=True),
        sa.Column("key", sa.String(length=16), nullable=True),
        sa.Column("metadata", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.CheckConstraint("duration > 0", name=op.f("ck_generations_duration_positive")),
        sa.CheckConstraint(
            "status IN ({})".format(", ".join(f"'{status}'" for status in STATUSES)),
            name=op.f("ck_generations_status_valid"),
        ),
        sa.CheckConstraint("attempts >= 0", name=op.f("ck_generations_attempts_not_negative")),
        sa.CheckConstraint(
            "progress >= 0 AND progress <= 1", name=op.f("ck_generations_progress_fraction")
        ),
        sa.ForeignKeyConstraint(
            ["prompt_id"],
            ["prompts.id"],
            name=op.f("fk_generations_prompt_id_prompts"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_generations")),
        sa.UniqueConstraint("file_path", name=op.f("uq_generations_file_path")),
    )
    op.create_index(op.f("ix_generations_prompt_id"), "generations", ["prompt_id"])
    # The claim takes the oldest pending row; listings by status go newest first (backwards).
    op.create_index(
        "ix_generations_status_created_at_id", "generations", ["status", "created_at", "id"]
    )
    # History newest first (scanned backwards), with the id as a stable tie-breaker.
    op.create_index("ix_generations_created_at_id", "generations", ["created_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_generations_created_at_id", table_name="generations")
    op.drop_index("ix_generations_status_created_at_id", table_name="generations")
    op.drop_index(op.f("ix_generations_prompt_id"), table_name="generations")
    op.drop_table("generations")
    op.drop_table("prompts")
