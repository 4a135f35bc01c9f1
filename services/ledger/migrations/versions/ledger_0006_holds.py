"""Authorization holds: money reserved on an account (its balances row's ``held``) until
a capture moves it or a release frees it.

Revision ID: ledger_0006
Revises: ledger_0005
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "ledger_0006"
down_revision = "ledger_0005"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "holds",
        # The authorizing transaction: its primary key places a hold exactly once.
        sa.Column("transaction_id", postgresql.UUID(as_uuid=False), primary_key=True),
        sa.Column("account_id", postgresql.UUID(as_uuid=False), nullable=False),
        sa.Column("currency", sa.CHAR(3), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False, server_default="held"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.Column("settled_at", sa.DateTime(timezone=True), nullable=True),
        # The capture's transaction id (null unless captured).
        sa.Column("settled_by", postgresql.UUID(as_uuid=False), nullable=True),
        sa.CheckConstraint("amount > 0", name="hold_amount_positive"),
        sa.CheckConstraint("status IN ('held', 'captured', 'released')", name="hold_status"),
        sa.CheckConstraint("(status = 'held') = (settled_at IS NULL)", name="hold_settled_at"),
        sa.CheckConstraint("(status = 'captured') = (settled_by IS NOT NULL)",
                           name="hold_settled_by"),
        schema="ledger",
    )
    op.create_index("holds_account", "holds", ["account_id"], schema="ledger")
    # A hold is history like a posting: the one change allowed is its single settlement,
    # held -> captured | released, nothing else of the row changing.
    op.execute("""
        CREATE FUNCTION ledger.guard_hold_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'UPDATE'
                    AND OLD.status = 'held' AND NEW.status IN ('captured', 'released')
                    AND NEW.transaction_id = OLD.transaction_id
                    AND NEW.account_id = OLD.account_id
                    AND NEW.currency = OLD.currency
                    AND NEW.amount = OLD.amount
                    AND NEW.created_at = OLD.created_at THEN
                RETURN NEW;
            END IF;
            RAISE EXCEPTION 'ledger holds are immutable once settled (% refused)', TG_OP
                USING ERRCODE = 'integrity_constraint_violation';
        END $$;
        CREATE TRIGGER holds_settle_once BEFORE UPDATE OR DELETE ON ledger.holds
            FOR EACH ROW EXECUTE FUNCTION ledger.guard_hold_change();
        CREATE TRIGGER holds_not_truncated BEFORE TRUNCATE ON ledger.holds
            FOR EACH STATEMENT EXECUTE FUNCTION ledger.refuse_entry_change();
    """)


def downgrade():
    op.drop_table("holds", schema="ledger")
    op.execute("DROP FUNCTION ledger.guard_hold_change()")
