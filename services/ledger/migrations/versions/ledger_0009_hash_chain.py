"""The hash chain: each posting stores its place in a lane of the chain (``chain_lane``,
``chain_seq``) and the SHA-256 of its content and of the previous posting's hash in that
lane (``chain_hash``); a head row per lane, locked by the batch that extends it, says
where the lane ends (services/ledger/chain.py).

Postings that exist already are chained here into lane 0, in ``(posted_at,
transaction_id)`` order, from the genesis hash (32 zero bytes): no posting is left
outside the chain.

Revision ID: ledger_0009
Revises: ledger_0008
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from services.ledger.chain import GENESIS_HASH, content, link, microseconds

revision = "ledger_0009"
down_revision = "ledger_0008"
branch_labels = None
depends_on = None

CHUNK = 5000
# More lanes than the batches a ledger process posts at once (its max_workers, 10 by
# default), so that a batch seldom waits for one. More can be added (docs/integrity.md).
LANES = 16

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
    UPDATE ledger.postings p SET chain_lane = 0, chain_seq = v.seq, chain_hash = v.hash
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
    op.add_column("postings", sa.Column("chain_lane", sa.SmallInteger(), nullable=True),
                  schema="ledger")
    op.add_column("postings", sa.Column("chain_seq", sa.BigInteger(), nullable=True),
                  schema="ledger")
    op.add_column("postings", sa.Column("chain_hash", postgresql.BYTEA(), nullable=True),
                  schema="ledger")
    # Postings refuse UPDATE (ledger_0004): this migration alone writes their links.
    op.execute("ALTER TABLE ledger.postings DISABLE TRIGGER postings_immutable")
    head_seq, head_hash = _chain_existing(op.get_bind())
    op.execute("ALTER TABLE ledger.postings ENABLE TRIGGER postings_immutable")
    for column in ("chain_lane", "chain_seq", "chain_hash"):
        op.alter_column("postings", column, nullable=False, schema="ledger")
    op.create_unique_constraint("postings_chain_place", "postings",
                                ["chain_lane", "chain_seq"], schema="ledger")
    op.create_check_constraint("chain_seq_positive", "postings", "chain_seq >= 1",
                               schema="ledger")
    op.create_check_constraint("chain_hash_sha256", "postings",
                               "octet_length(chain_hash) = 32", schema="ledger")

    op.create_table(
        "chain_heads",
        sa.Column("lane", sa.SmallInteger(), primary_key=True),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", postgresql.BYTEA(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.func.now()),
        sa.CheckConstraint("lane >= 0", name="lane_not_negative"),
        sa.CheckConstraint("seq >= 0", name="head_seq_not_negative"),
        sa.CheckConstraint("octet_length(hash) = 32", name="head_hash_sha256"),
        schema="ledger",
    )
    heads = [{"lane": lane, "seq": 0, "hash": GENESIS_HASH} for lane in range(LANES)]
    heads[0].update(seq=head_seq, hash=head_hash)
    op.get_bind().execute(sa.text(
        "INSERT INTO ledger.chain_heads (lane, seq, hash) VALUES (:lane, :seq, :hash)"), heads)
    # A head only moves forward and never goes away, and a new lane starts at genesis: a
    # rewound head would let a lane's newest postings be dropped unnoticed by anyone who
    # cannot disable triggers.
    op.execute("""
        CREATE FUNCTION ledger.guard_chain_head() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'INSERT' AND NEW.seq = 0
                    AND NEW.hash = decode(repeat('00', 32), 'hex') THEN
                RETURN NEW;
            END IF;
            IF TG_OP = 'UPDATE' AND NEW.lane = OLD.lane AND NEW.seq > OLD.seq THEN
                RETURN NEW;
            END IF;
            RAISE EXCEPTION 'the ledger chain heads only move forward (% refused)', TG_OP
                USING ERRCODE = 'integrity_constraint_violation';
        END $$;
        CREATE TRIGGER chain_heads_forward BEFORE UPDATE OR DELETE ON ledger.chain_heads
            FOR EACH ROW EXECUTE FUNCTION ledger.guard_chain_head();
        CREATE TRIGGER chain_heads_start_at_genesis BEFORE INSERT ON ledger.chain_heads
            FOR EACH ROW EXECUTE FUNCTION ledger.guard_chain_head();
        CREATE TRIGGER chain_heads_not_truncated BEFORE TRUNCATE ON ledger.chain_heads
            FOR EACH STATEMENT EXECUTE FUNCTION ledger.refuse_entry_change();
    """)


def downgrade():
    op.drop_table("chain_heads", schema="ledger")
    op.execute("DROP FUNCTION ledger.guard_chain_head()")
    op.drop_constraint("postings_chain_place", "postings", schema="ledger", type_="unique")
    for name in ("chain_seq_positive", "chain_hash_sha256"):
        op.drop_constraint(name, "postings", schema="ledger", type_="check")
    for column in ("chain_hash", "chain_seq", "chain_lane"):
        op.drop_column("postings", column, schema="ledger")
