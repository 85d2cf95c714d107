"""Maintained generation counts: the ``generation_counts`` table and the triggers that keep it.

Listing the history with its exact total used to run ``count(*)`` over the whole table on every
page (20 ms at 100k rows on PostgreSQL). The database now keeps the number of generations per
status itself, in the same transaction as every insert, status change, delete and truncate, so
the total is a sum over a handful of rows and exact at every snapshot, whichever code wrote the
rows (the queue, a seeding script, ``psql``).

PostgreSQL spreads each status over :data:`PG_SHARDS` rows, one picked per server backend, so
concurrent transactions on different connections do not queue on one hot counter row; only the
sum over a status's shards means anything (one shard may go negative). Its triggers are
statement-level with transition tables, so a bulk insert of 100k rows updates five rows once.
SQLite serialises writers anyway: one row per status, row-level triggers.

A later migration that rebuilds ``generations`` on SQLite (batch mode copies the table) drops
these triggers and must create them again.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATUSES = ("pending", "processing", "completed", "failed", "cancelled")
#: Counter rows per status on PostgreSQL (a backend uses shard ``pg_backend_pid() % PG_SHARDS``).
PG_SHARDS = 8

# Each statement-level trigger folds what the statement changed into per-status deltas and
# applies them in status order, so two transactions always lock counter rows in the same order.
PG_APPLY = """
    FOR change IN {deltas} LOOP
        UPDATE generation_counts SET total = total + change.delta
        WHERE status = change.status AND shard = pg_backend_pid() % {shards};
    END LOOP;
    RETURN NULL;
"""
PG_FUNCTIONS = {
    "generation_counts_after_insert": PG_APPLY.format(
        deltas="SELECT status, count(*) AS delta FROM added GROUP BY status ORDER BY status",
        shards=PG_SHARDS,
    ),
    "generation_counts_after_delete": PG_APPLY.format(
        deltas="SELECT status, -count(*) AS delta FROM removed GROUP BY status ORDER BY status",
        shards=PG_SHARDS,
    ),
    "generation_counts_after_update": PG_APPLY.format(
        deltas="SELECT status, sum(delta) AS delta FROM ("
        "SELECT status, -1 AS delta FROM removed UNION ALL SELECT status, 1 FROM added"
        ") AS moves GROUP BY status HAVING sum(delta) <> 0 ORDER BY status",
        shards=PG_SHARDS,
    ),
}
PG_TRIGGERS = {
    "generation_counts_insert": (
        "AFTER INSERT ON generations REFERENCING NEW TABLE AS added",
        "generation_counts_after_insert",
    ),
    "generation_counts_delete": (
        "AFTER DELETE ON generations REFERENCING OLD TABLE AS removed",
        "generation_counts_after_delete",
    ),
    "generation_counts_update": (
        "AFTER UPDATE ON generations REFERENCING OLD TABLE AS removed NEW TABLE AS added",
        "generation_counts_after_update",
    ),
}

SQLITE_TRIGGERS = {
    "generation_counts_insert": """
        CREATE TRIGGER generation_counts_insert AFTER INSERT ON generations
        BEGIN
            UPDATE generation_counts SET total = total + 1 WHERE status = NEW.status;
        END""",
    "generation_counts_delete": """
        CREATE TRIGGER generation_counts_delete AFTER DELETE ON generations
        BEGIN
            UPDATE generation_counts SET total = total - 1 WHERE status = OLD.status;
        END""",
    "generation_counts_update": """
        CREATE TRIGGER generation_counts_update AFTER UPDATE OF status ON generations
        WHEN OLD.status IS NOT NEW.status
        BEGIN
            UPDATE generation_counts SET total = total - 1 WHERE status = OLD.status;
            UPDATE generation_counts SET total = total + 1 WHERE status = NEW.status;
        END""",
}


def upgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    op.create_table(
        "generation_counts",
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("shard", sa.SmallInteger(), nullable=False),
        sa.Column("total", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "status IN ({})".format(", ".join(f"'{status}'" for status in STATUSES)),
            name=op.f("ck_generation_counts_status_valid"),
        ),
        sa.CheckConstraint("shard >= 0", name=op.f("ck_generation_counts_shard_not_negative")),
        sa.PrimaryKeyConstraint("status", "shard", name=op.f("pk_generation_counts")),
    )
    if postgresql:
        # No writer may change generations between counting them and arming the triggers.
        op.execute("LOCK TABLE generations IN SHARE ROW EXCLUSIVE MODE")
    shards = PG_SHARDS if postgresql else 1
    counts = op.get_bind().execute(
        sa.text("SELECT status, count(*) FROM generations GROUP BY status")
    )
    existing = dict(counts.all())
    op.bulk_insert(
        sa.table(
            "generation_counts",
            sa.column("status", sa.String),
            sa.column("shard", sa.SmallInteger),
            sa.column("total", sa.BigInteger),
        ),
        [
            {"status": status, "shard": shard, "total": existing.get(status, 0) * (shard == 0)}
            for status in STATUSES
            for shard in range(shards)
        ],
    )
    if postgresql:
        for function, body in PG_FUNCTIONS.items():
            op.execute(
                f"CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$\n"
                f"DECLARE change record;\nBEGIN{body}END\n$$"
            )
        for trigger, (when, function) in PG_TRIGGERS.items():
            op.execute(
                f"CREATE TRIGGER {trigger} {when} FOR EACH STATEMENT EXECUTE FUNCTION {function}()"
            )
        op.execute(
            "CREATE FUNCTION generation_counts_after_truncate() RETURNS trigger LANGUAGE plpgsql "
            "AS $$ BEGIN UPDATE generation_counts SET total = 0; RETURN NULL; END $$"
        )
        op.execute(
            "CREATE TRIGGER generation_counts_truncate AFTER TRUNCATE ON generations "
            "FOR EACH STATEMENT EXECUTE FUNCTION generation_counts_after_truncate()"
        )
    else:
        for statement in SQLITE_TRIGGERS.values():
            op.execute(statement)


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    if postgresql:
        for trigger in [*PG_TRIGGERS, "generation_counts_truncate"]:
            op.execute(f"DROP TRIGGER IF EXISTS {trigger} ON generations")
        for function in [*PG_FUNCTIONS, "generation_counts_after_truncate"]:
            op.execute(f"DROP FUNCTION IF EXISTS {function}()")
    else:
        for trigger in SQLITE_TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
    op.drop_table("generation_counts")
