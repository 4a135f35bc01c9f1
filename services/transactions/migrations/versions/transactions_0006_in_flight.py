"""Pending transactions listed in a table of their own, so a transaction's row is
updated in place.

Each transaction is updated twice (decided, then finished). With the partial index
``transactions_in_flight (created_at) WHERE status = 'pending'`` the second update
changes a column of an index predicate, and a full page leaves no room beside the
row, so PostgreSQL wrote a new row version elsewhere and a new entry in each of the
table's eight indexes, twice per transaction. Now:

- ``in_flight`` holds the id and creation time of every pending transaction; two
  statement triggers keep it so whatever statement inserts or updates transactions,
  with one set-based statement each (transition tables), never one call per row;
- the partial index goes, so no index of ``transactions`` names ``status``;
- ``fillfactor`` 50 leaves room on each page for the two updates, which PostgreSQL
  then makes heap-only (HOT): no index is touched.

Recovery reads ``in_flight`` first and the transactions by primary key after
(services/transactions/overdue.py, ``_overdue``).

Revision ID: transactions_0006
Revises: transactions_0005
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "transactions_0006"
down_revision = "transactions_0005"
branch_labels = None
depends_on = None

UUID = postgresql.UUID(as_uuid=False)


def upgrade():
    op.create_table(
        "in_flight",
        sa.Column("transaction_id", UUID, primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        schema="transactions",
    )
    op.create_index("in_flight_by_age", "in_flight", ["created_at"], schema="transactions")
    # A queue: every row is deleted within seconds. Vacuumed after every 10,000 of them,
    # not after a fifth of the table, so recovery's reads never wade through dead rows.
    op.execute("ALTER TABLE transactions.in_flight SET (autovacuum_vacuum_scale_factor = 0, "
               "autovacuum_vacuum_threshold = 10000)")
    op.execute("""
        CREATE FUNCTION transactions.track_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO transactions.in_flight (transaction_id, created_at)
            SELECT id, created_at FROM made WHERE status = 'pending';
            RETURN NULL;
        END $$;

        CREATE FUNCTION transactions.track_updated() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            DELETE FROM transactions.in_flight f USING changed c
             WHERE f.transaction_id = c.id AND c.status <> 'pending';
            RETURN NULL;
        END $$;

        CREATE TRIGGER in_flight_on_insert AFTER INSERT ON transactions.transactions
            REFERENCING NEW TABLE AS made
            FOR EACH STATEMENT EXECUTE FUNCTION transactions.track_inserted();
        CREATE TRIGGER in_flight_on_update AFTER UPDATE ON transactions.transactions
            REFERENCING NEW TABLE AS changed
            FOR EACH STATEMENT EXECUTE FUNCTION transactions.track_updated();

        INSERT INTO transactions.in_flight (transaction_id, created_at)
        SELECT id, created_at FROM transactions.transactions WHERE status = 'pending';
    """)
    op.drop_index("transactions_in_flight", table_name="transactions", schema="transactions")
    op.execute("ALTER TABLE transactions.transactions SET (fillfactor = 50)")


def downgrade():
    op.execute("ALTER TABLE transactions.transactions RESET (fillfactor)")
    op.create_index("transactions_in_flight", "transactions", ["created_at"],
                    schema="transactions", postgresql_where=sa.text("status = 'pending'"))
    op.execute("""
        DROP TRIGGER in_flight_on_update ON transactions.transactions;
        DROP TRIGGER in_flight_on_insert ON transactions.transactions;
        DROP FUNCTION transactions.track_updated();
        DROP FUNCTION transactions.track_inserted();
    """)
    op.drop_table("in_flight", schema="transactions")
