"""Initial schema: api_keys, events, event_stages and the indexes of the list/stats/rules queries.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

# An increasing integer key (SQLite: the rowid) so stage rows are appended in order, not scattered.
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the tables and indexes."""
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
    )
    op.create_table(
        "events",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("device_id", sa.String(128), nullable=False),
        sa.Column("session_id", sa.String(128), nullable=False),
        sa.Column("context", sa.String(128), nullable=False),
        sa.Column("captured_at", sa.DateTime(), nullable=False),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.Column("stages", sa.Text(), nullable=False),
        sa.Column("payload_hash", sa.String(64), nullable=False),
        sa.Column("output", sa.Text(), nullable=False),
        sa.Column("rule", sa.String(128), nullable=True),
        sa.Column("key_id", sa.BigInteger(), nullable=True),
        sa.UniqueConstraint("event_id", name="uq_events_event_id"),
    )
    op.create_index("ix_events_captured", "events", ["captured_at", "event_id"])
    op.create_index("ix_events_device_captured", "events", ["device_id", "captured_at"])
    op.create_index("ix_events_session_captured", "events", ["session_id", "captured_at"])
    op.create_index("ix_events_context_captured", "events", ["context", "captured_at"])
    op.create_table(
        "event_stages",
        sa.Column("event_pk", _ID, sa.ForeignKey("events.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("position", sa.SmallInteger(), primary_key=True),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("top_label", sa.String(128), nullable=False),
        sa.Column("top_probability", sa.Float(), nullable=False),
        sa.Column("entropy", sa.Float(), nullable=False),
        sa.Column("context", sa.String(128), nullable=False),
        sa.Column("session_id", sa.String(128), nullable=False),
        sa.Column("captured_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_stages_model_captured", "event_stages", ["model", "captured_at"])
    op.create_index("ix_stages_model_label_captured", "event_stages", ["model", "top_label", "captured_at"])
    op.create_index(
        "ix_stages_session_label_captured", "event_stages", ["session_id", "top_label", "captured_at"]
    )
    op.create_index("ix_stages_captured", "event_stages", ["captured_at"])


def downgrade() -> None:
    """Drop everything this revision created."""
    op.drop_table("event_stages")
    op.drop_table("events")
    op.drop_table("api_keys")
