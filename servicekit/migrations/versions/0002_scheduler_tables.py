"""Scheduler tables: alarms, the fire log, consumer groups and their deliveries, shard leases, live instances.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 02:16:57.532475

Runs on PostgreSQL and SQLite: alter existing tables inside ``with op.batch_alter_table(...)`` (SQLite rebuilds
the table), keep instants as BIGINT microseconds, and make ``downgrade`` undo exactly what ``upgrade`` does.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "alarms",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("lab", sa.String(length=63), nullable=False),
        sa.Column("alarm_id", sa.String(length=63), nullable=False),
        sa.Column("shard", sa.Integer(), nullable=False),
        sa.Column("display_name", sa.Text(), server_default="", nullable=False),
        sa.Column("owner_email", sa.String(length=320), server_default="", nullable=False),
        sa.Column("target", sa.Text(), server_default="", nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("schedule", sa.JSON(), nullable=False),
        sa.Column("start_us", sa.BigInteger(), nullable=True),
        sa.Column("end_us", sa.BigInteger(), nullable=True),
        sa.Column("max_fires", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("grace_us", sa.BigInteger(), nullable=False),
        sa.Column("catch_up", sa.String(length=8), nullable=False),
        sa.Column("catch_up_limit", sa.Integer(), nullable=False),
        sa.Column("gap_policy", sa.String(length=16), nullable=False),
        sa.Column("jitter_us", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("notify_owner", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("state", sa.String(length=12), nullable=False),
        sa.Column("next_fire_us", sa.BigInteger(), nullable=True),
        sa.Column("next_due_us", sa.BigInteger(), nullable=True),
        sa.Column("last_fire_us", sa.BigInteger(), nullable=True),
        sa.Column("fire_count", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("paused_us", sa.BigInteger(), nullable=True),
        sa.Column("create_us", sa.BigInteger(), nullable=False),
        sa.Column("update_us", sa.BigInteger(), nullable=False),
        sa.Column("version", sa.BigInteger(), server_default="1", nullable=False),
        sa.Column("request_id", sa.String(length=128), nullable=True),
        sa.Column("snapshot", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alarms")),
        sa.UniqueConstraint("lab", "alarm_id", name="uq_alarms_lab_alarm_id"),
    )
    with op.batch_alter_table("alarms", schema=None) as batch_op:
        batch_op.create_index(
            "ix_alarms_completed",
            ["update_us"],
            unique=False,
            postgresql_where=sa.text("state = 'COMPLETED'"),
            sqlite_where=sa.text("state = 'COMPLETED'"),
        )
        batch_op.create_index(
            "ix_alarms_due",
            ["shard", "next_due_us"],
            unique=False,
            postgresql_where=sa.text("state = 'ACTIVE'"),
            sqlite_where=sa.text("state = 'ACTIVE'"),
        )
        batch_op.create_index("ix_alarms_lab_next", ["lab", "next_due_us"], unique=False)
        batch_op.create_index("ix_alarms_lab_owner", ["lab", "owner_email", "next_due_us"], unique=False)
        batch_op.create_index("ix_alarms_lab_target", ["lab", "target"], unique=False)
        batch_op.create_index(
            "uq_alarms_lab_request_id",
            ["lab", "request_id"],
            unique=True,
            postgresql_where=sa.text("request_id IS NOT NULL"),
            sqlite_where=sa.text("request_id IS NOT NULL"),
        )

    op.create_table(
        "consumer_groups",
        sa.Column("lab", sa.String(length=63), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("filter", sa.JSON(), nullable=False),
        sa.Column("ack_deadline_us", sa.BigInteger(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("position_seq", sa.BigInteger(), nullable=False),
        sa.Column("create_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("lab", "name", name=op.f("pk_consumer_groups")),
    )
    op.create_table(
        "fires",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("lab", sa.String(length=63), nullable=False),
        sa.Column("alarm_pk", sa.BigInteger(), nullable=False),
        sa.Column("alarm_id", sa.String(length=63), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("owner_email", sa.String(length=320), nullable=False),
        sa.Column("nominal_us", sa.BigInteger(), nullable=False),
        sa.Column("due_us", sa.BigInteger(), nullable=False),
        sa.Column("fire_us", sa.BigInteger(), nullable=False),
        sa.Column("outcome", sa.SmallInteger(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("notify_owner", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("snapshot", sa.LargeBinary(), nullable=True),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_fires")),
        sa.UniqueConstraint("alarm_pk", "nominal_us", name="uq_fires_occurrence"),
    )
    with op.batch_alter_table("fires", schema=None) as batch_op:
        batch_op.create_index("ix_fires_fire_us", ["fire_us"], unique=False)
        batch_op.create_index("ix_fires_lab_alarm", ["lab", "alarm_id", "seq"], unique=False)
        batch_op.create_index("ix_fires_lab_target", ["lab", "target", "seq"], unique=False)

    op.create_table(
        "group_deliveries",
        sa.Column("lab", sa.String(length=63), nullable=False),
        sa.Column("group_name", sa.String(length=63), nullable=False),
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("alarm_id", sa.String(length=63), nullable=False),
        sa.Column("nominal_us", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("member", sa.String(length=160), nullable=True),
        sa.Column("sent_us", sa.BigInteger(), nullable=True),
        sa.Column("delivered_us", sa.BigInteger(), nullable=True),
        sa.Column("acked_us", sa.BigInteger(), nullable=True),
        sa.Column("deadline_us", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("lab", "group_name", "seq", name=op.f("pk_group_deliveries")),
    )
    with op.batch_alter_table("group_deliveries", schema=None) as batch_op:
        batch_op.create_index(
            "ix_group_deliveries_due",
            ["deadline_us"],
            unique=False,
            postgresql_where=sa.text("state = 'DELIVERED'"),
            sqlite_where=sa.text("state = 'DELIVERED'"),
        )
        batch_op.create_index("ix_group_deliveries_fire", ["lab", "group_name", "alarm_id", "nominal_us"], unique=False)

    op.create_table(
        "scheduler_instances",
        sa.Column("owner", sa.String(length=128), nullable=False),
        sa.Column("expire_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("owner", name=op.f("pk_scheduler_instances")),
    )
    op.create_table(
        "shard_leases",
        sa.Column("shard", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("owner", sa.String(length=128), nullable=True),
        sa.Column("epoch", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("expire_us", sa.BigInteger(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("shard", name=op.f("pk_shard_leases")),
    )


def downgrade() -> None:
    op.drop_table("shard_leases")
    op.drop_table("scheduler_instances")
    with op.batch_alter_table("group_deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_group_deliveries_fire")
        batch_op.drop_index(
            "ix_group_deliveries_due",
            postgresql_where=sa.text("state = 'DELIVERED'"),
            sqlite_where=sa.text("state = 'DELIVERED'"),
        )

    op.drop_table("group_deliveries")
    with op.batch_alter_table("fires", schema=None) as batch_op:
        batch_op.drop_index("ix_fires_lab_target")
        batch_op.drop_index("ix_fires_lab_alarm")
        batch_op.drop_index("ix_fires_fire_us")

    op.drop_table("fires")
    op.drop_table("consumer_groups")
    with op.batch_alter_table("alarms", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_alarms_lab_request_id",
            postgresql_where=sa.text("request_id IS NOT NULL"),
            sqlite_where=sa.text("request_id IS NOT NULL"),
        )
        batch_op.drop_index("ix_alarms_lab_target")
        batch_op.drop_index("ix_alarms_lab_owner")
        batch_op.drop_index("ix_alarms_lab_next")
        batch_op.drop_index(
            "ix_alarms_due", postgresql_where=sa.text("state = 'ACTIVE'"), sqlite_where=sa.text("state = 'ACTIVE'")
        )
        batch_op.drop_index(
            "ix_alarms_completed",
            postgresql_where=sa.text("state = 'COMPLETED'"),
            sqlite_where=sa.text("state = 'COMPLETED'"),
        )

    op.drop_table("alarms")
