"""The hash chain: each posting stores its place in one ledger-wide order (``chain_seq``)
and the SHA-256 of its content and of the previous posting's hash (``chain_hash``); one
head row, locked by every batch, says where the chain ends (services/ledger/chain.py).

Postings that exist already are chained here, in ``(posted_at, transaction_id)`` order,
from the genesis hash (32 zero bytes): no posting is left outside the chain.

Revision ID: ledger_0008
Revises: ledger_0007
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from services.ledger.chain import GENESIS_HASH, content, link, microseconds

revision = "ledger_0008"
down_revision = "ledger_0007"
branch_labels = None
depends_on = None

CHUNK = 5000

_EXISTING = sa.text("""
    SELECT transaction_id::text AS transaction_id, type, currency, amount,
           debit_account_id::text AS debit_account_id,
           credit_account_id::text AS credit_account_id, posted_at
      FROM ledger.postings
     WHERE (posted_at, transaction_id)
           > (CAST(:posted_at AS timestamptz), CAST(:transaction_id AS uuid))
     ORDER BY posted_at, transaction_id
     LIMIT :limit
""")
_ENTRIES = sa.text("""
    SELECT transaction_id::text AS transaction_id, id::text AS id,
           account_id::text AS account_id, amount, balance_after, account_seq, created_at
      FROM ledger.entries WHERE transaction_id = ANY(CAST(:ids AS uuid[]))
""")
_LINK = sa.text("""
    UPDATE ledger.postings p SET chain_seq = v.seq, chain_hash = v.hash
      FROM unnest(CAST(:ids AS uuid[]), CAST(:seqs AS bigint[]), CAST(:hashes AS bytea[]))
           AS v(transaction_id, seq, hash)
     WHERE p.transaction_id = v.transaction_id
""")


def _chain_existing(connection):
    """Links every posting there is; ``(seq, hash)`` of the last (genesis if none)."""
    seq, previous = 0, GENESIS_HASH
    after = ("-infinity", "00000000-0000-0000-0000-000000000000")
    while True:
        rows = connection.execute(_EXISTING, {"posted_at": after[0],
                                              "transaction_id": after[1],
                                              "limit": CHUNK}).all()
        if not rows:
            return seq, previous
        lines = {}
        for entry in connection.execute(
                _ENTRIES, {"ids": [row.transaction_id for row in rows]}):
            lines.setdefault(entry.transaction_id, []).append((
                entry.id, entry.account_id, entry.amount, entry.balance_after,
                entry.account_seq, microseconds(entry.created_at)))
        seqs, hashes = [], []
        for row in rows:
            seq += 1
            previous = link(previous, content(
                row.transaction_id, row.type, row.currency, row.amount,
                row.debit_account_id, row.credit_account_id, microseconds(row.posted_at),
                lines.get(row.transaction_id, ())))
            seqs.append(seq)
            hashes.append(previous)
        connection.execute(_LINK, {"ids": [row.transaction_id for row in rows],
                                   "seqs": seqs, "hashes": hashes})
        after = (rows[-1].posted_at, rows[-1].transaction_id)


def upgrade():
    op.add_column("postings", sa.Column("chain_seq", sa.BigInteger(), nullable=True),
                  schema="ledger")
    op.add_column("postings", sa.Column("chain_hash", postgresql.BYTEA(), nullable=True),
                  schema="ledger")
    # Postings refuse UPDATE (ledger_0004): this migration alone writes their links.
    op.execute("ALTER TABLE ledger.postings DISABLE TRIGGER postings_immutable")
    head_seq, head_hash = _chain_existing(op.get_bind())
    op.execute("ALTER TABLE ledger.postings ENABLE TRIGGER postings_immutable")
    op.alter_column("postings", "chain_seq", nullable=False, schema="ledger")
    op.alter_column("postings", "chain_hash", nullable=False, schema="ledger")
    op.create_unique_constraint("postings_chain_seq", "postings", ["chain_seq"],
                                schema="ledger")
    op.create_check_constraint("chain_seq_positive", "postings", "chain_seq >= 1",
                               schema="ledger")
    op.create_check_constraint("chain_hash_sha256", "postings",
                               "octet_length(chain_hash) = 32", schema="ledger")

    op.create_table(
        "chain_head",
        sa.Column("id", sa.SmallInteger(), primary_key=True),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", postgresql.BYTEA(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.CheckConstraint("id = 1", name="one_chain"),
        sa.CheckConstraint("seq >= 0", name="head_seq_not_negative"),
        sa.CheckConstraint("octet_length(hash) = 32", name="head_hash_sha256"),
        schema="ledger",
    )
    op.get_bind().execute(
        sa.text("INSERT INTO ledger.chain_head (id, seq, hash) VALUES (1, :seq, :hash)"),
        {"seq": head_seq, "hash": head_hash})
    # The head only moves forward, and never goes away: a rewound head would let the
    # newest postings be dropped unnoticed by anyone who cannot disable triggers.
    op.execute("""
        CREATE FUNCTION ledger.guard_chain_head() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'UPDATE' AND NEW.id = OLD.id AND NEW.seq > OLD.seq THEN
                RETURN NEW;
            END IF;
            RAISE EXCEPTION 'the ledger chain head only moves forward (% refused)', TG_OP
                USING ERRCODE = 'integrity_constraint_violation';
        END $$;
        CREATE TRIGGER chain_head_forward BEFORE UPDATE OR DELETE ON ledger.chain_head
            FOR EACH ROW EXECUTE FUNCTION ledger.guard_chain_head();
        CREATE TRIGGER chain_head_not_truncated BEFORE TRUNCATE ON ledger.chain_head
            FOR EACH STATEMENT EXECUTE FUNCTION ledger.refuse_entry_change();
    """)


def downgrade():
    op.drop_table("chain_head", schema="ledger")
    op.execute("DROP FUNCTION ledger.guard_chain_head()")
    op.drop_constraint("postings_chain_seq", "postings", schema="ledger", type_="unique")
    for name in ("chain_seq_positive", "chain_hash_sha256"):
        op.drop_constraint(name, "postings", schema="ledger", type_="check")
    op.drop_column("postings", "chain_hash", schema="ledger")
    op.drop_column("postings", "chain_seq", schema="ledger")
