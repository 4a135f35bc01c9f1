"""What a posting leaves in the ledger's database: entries and postings that no
statement may change or delete, and one outbox message per entry, in its account's gapless
order, which the relay finds by an index."""
import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from services.ledger.entries import entries
from services.ledger.outbox import outbox
from services.ledger.postings import postings
from tests.support.ledger import (  # noqa: F401 - fixtures
    count,
    deposit,
    entries_of,
    open_account,
    post,
    posting,
    service,
    stored_result,
    withdrawal,
)


# --- immutability ------------------------------------------------------------------------


@pytest.mark.parametrize("statement", [
    "UPDATE ledger.entries SET amount = amount * 2 WHERE transaction_id = :t",
    "UPDATE ledger.entries SET balance_after = 0 WHERE transaction_id = :t",
    "DELETE FROM ledger.entries WHERE transaction_id = :t",
    "TRUNCATE ledger.entries",
    "UPDATE ledger.postings SET amount = 1 WHERE transaction_id = :t",
    "DELETE FROM ledger.postings WHERE transaction_id = :t",
    "TRUNCATE ledger.postings",
])
def test_posted_entries_and_postings_are_immutable(service, engine, statement):
    one = deposit(open_account(service), 30)
    result = post(service, one)
    with pytest.raises(IntegrityError, match="immutable"), engine.begin() as connection:
        connection.execute(text(statement), {"t": one["transaction_id"]})
    assert stored_result(engine, one["transaction_id"]) == result
    assert count(engine, entries, transaction_id=one["transaction_id"]) == 2


# --- the outbox --------------------------------------------------------------------------


def test_every_entry_has_one_outbox_message_in_its_account_order(service, engine):
    alice, bob = open_account(service), open_account(service)
    batch = [deposit(alice, 100), posting(alice, bob, 30), posting(alice, bob, 500),
             withdrawal(bob, 10)]
    results = service.post(batch)
    with engine.connect() as connection:
        rows = connection.execute(
            select(outbox).where(outbox.c.transaction_id.in_(
                [p["transaction_id"] for p in batch])).order_by(outbox.c.id)).all()
        links = {row.transaction_id: {"lane": row.chain_lane, "seq": row.chain_seq,
                                      "hash": row.chain_hash.hex()}
                 for row in connection.execute(select(postings))}
    posted = [r for r in results if r["status"] == "posted"]
    assert len(rows) == 2 * len(posted) == 6
    by_entry = {row.payload["id"]: row for row in rows}
    for result, given in zip(results, batch):
        if result["status"] != "posted":
            continue
        debit, credit = result["entries"]
        for entry, counterparty in ((debit, credit["account_id"]),
                                    (credit, debit["account_id"])):
            row = by_entry[entry["id"]]
            assert row.account_id == entry["account_id"]
            assert row.transaction_id == given["transaction_id"]
            assert row.published_at is None
            assert row.payload == dict(
                entry,
                account_seq=row.account_seq,
                currency="USD",
                counterparty_account_id=counterparty,
                posting={
                    "transaction_id": given["transaction_id"],
                    "type": given["type"],
                    "currency": "USD",
                    "amount": given["amount"],
                    "debit_account_id": debit["account_id"],
                    "credit_account_id": credit["account_id"],
                    "posted_at": result["posted_at"],
                    # Its link in the hash chain: a copy outside the database.
                    "chain": links[given["transaction_id"]],
                },
            )
    # The messages carry each account's sequence, gapless, in id order.
    for account in (alice, bob):
        seqs = [row.account_seq for row in rows if row.account_id == account]
        assert seqs == [e.account_seq for e in entries_of(engine, account)] == [1, 2]


def test_the_relay_finds_unpublished_messages_by_an_index(engine):
    with engine.connect() as connection:
        definition = connection.execute(text(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = 'ledger' "
            "AND indexname = 'outbox_unpublished'")).scalar_one()
    assert "(id)" in definition and "published_at IS NULL" in definition
