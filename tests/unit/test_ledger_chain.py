"""The ledger's hash chain (services/ledger/chain.py, chain_check.py) against real
PostgreSQL: every posting linked in one order that concurrent batches keep, and a change
made behind the ledger's back — by a superuser who disables the immutability triggers —
found at exactly the posting it touched, by the verification and by reconciliation.

The module has a database of its own: its tests tamper with the books (and put them back)."""
import hashlib
import io
import os
import uuid
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

import eventlet
import pytest
from alembic import command
from nameko.testing.services import worker_factory
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from paysys import reconcile as cli_reconcile
from paysys.database import alembic_config, migrate
from services.ledger import chain_check
from services.ledger.entries import entries
from services.ledger.postings import postings
from services.ledger.service import LedgerService
from shared.catalog import BY_NAME
from shared.db import DatabaseAccess
from tests.support.concurrency import run_together
from tests.support.databases import migrated_database, pooled_engine
from tests.support.kafka import running_broker
from tests.support.ledger import count, deposit, new_id, open_account, posting, withdrawal
from tests.support.ledger_locks import wait_for_a_lock_wait


@pytest.fixture(scope="module")
def chain_url():
    with migrated_database("paysys_unit_chain_{}".format(os.getpid())) as url:
        yield url


@pytest.fixture(scope="module")
def engine(chain_url):
    with pooled_engine(chain_url, "paysys-tests-chain") as engine:
        yield engine


@pytest.fixture
def ledger(engine):
    return worker_factory(LedgerService, db=DatabaseAccess(engine, "ledger"))


def verified(engine, checkpoint=None):
    """The chain's report, read in one snapshot as reconciliation reads it."""
    with engine.connect() as connection:
        connection.execution_options(isolation_level="REPEATABLE READ",
                                     postgresql_readonly=True)
        with connection.begin():
            return chain_check.verify(connection, checkpoint=checkpoint)


def link_of(engine, transaction_id):
    with engine.connect() as connection:
        return connection.execute(
            select(postings.c.chain_lane, postings.c.chain_seq, postings.c.chain_hash)
            .where(postings.c.transaction_id == transaction_id)).one()


def head_of(report, lane=0):
    [head] = [head for head in report["heads"] if head["lane"] == lane]
    return head


@contextmanager
def triggers_off(engine, table):
    """A superuser's way past the immutability triggers, for one transaction."""
    with engine.begin() as connection:
        connection.execute(text("ALTER TABLE {} DISABLE TRIGGER USER".format(table)))
        yield connection
        connection.execute(text("ALTER TABLE {} ENABLE TRIGGER USER".format(table)))


def some_postings(ledger, count=6):
    """``count`` posted transactions (deposits and transfers) in one batch; their ids."""
    alice, bob = open_account(ledger), open_account(ledger)
    batch = [deposit(alice, 10_000)] + [posting(alice, bob, 100 + n) for n in range(count - 1)]
    results = ledger.post(batch)
    assert [result["status"] for result in results] == ["posted"] * count
    return [one["transaction_id"] for one in batch]


# --- what a link is -------------------------------------------------------------------------


def test_a_link_is_the_sha256_of_the_previous_hash_and_the_documented_content(ledger, engine):
    # The layout docs/integrity.md gives, so that anyone can verify the chain on their own.
    alice = open_account(ledger)
    one = deposit(alice, 1_234)
    [result] = ledger.post([one])
    lane, seq, stored = link_of(engine, one["transaction_id"])
    with engine.connect() as connection:
        previous = connection.execute(select(postings.c.chain_hash).where(
            postings.c.chain_lane == lane,
            postings.c.chain_seq == seq - 1)).scalar() if seq > 1 else bytes(32)
        row = connection.execute(select(postings).where(
            postings.c.transaction_id == one["transaction_id"])).one()
        lines = connection.execute(select(entries).where(
            entries.c.transaction_id == one["transaction_id"]).order_by(entries.c.id)).all()

    def us(moment):
        return str((moment - datetime(1970, 1, 1, tzinfo=timezone.utc)) // timedelta(
            microseconds=1))

    layout = "|".join([
        "v1", row.transaction_id, "deposit", "USD", "1234", row.debit_account_id, alice,
        us(row.posted_at),
        ";".join(",".join([line.id, line.account_id, str(line.amount), str(line.balance_after),
                           str(line.account_seq), us(line.created_at)]) for line in lines)])
    assert stored == hashlib.sha256(bytes(previous) + layout.encode("ascii")).digest()
    assert [entry["balance_after"] for entry in result["entries"]] == sorted(
        [line.balance_after for line in lines])


def test_postings_take_consecutive_places_and_the_head_names_the_last(ledger, engine):
    # One batch at a time: each finds the first lane free.
    before = head_of(verified(engine))["seq"]
    ids = some_postings(ledger, 5)
    assert [tuple(link_of(engine, one)[:2]) for one in ids] == [
        (0, seq) for seq in range(before + 1, before + 6)]
    report = verified(engine)
    assert report["valid"] is True, report
    assert head_of(report) == {"lane": 0, "seq": before + 5,
                               "hash": link_of(engine, ids[-1]).chain_hash.hex()}
    assert report["postings_checked"] == sum(head["seq"] for head in report["heads"])
    assert len(report["heads"]) == 16
    assert report["first_broken"] is None and report["broken_links"] == 0


def test_refused_postings_and_holds_take_no_place_in_the_chain(ledger, engine):
    alice, bob = open_account(ledger), open_account(ledger)
    head = head_of(verified(engine))["seq"]
    results = ledger.post([posting(alice, bob, 5),  # nothing to move: refused
                           posting(alice, bob, 5, type="payment", hold=True)])
    assert [result["status"] for result in results] == ["rejected", "rejected"]
    ledger.post([deposit(alice, 50)])
    ledger.post([posting(alice, bob, 20, type="payment", hold=True)])
    report = verified(engine)
    assert report["valid"] is True and head_of(report)["seq"] == head + 1


def test_a_replayed_posting_keeps_its_one_link(ledger, engine):
    one = deposit(open_account(ledger), 70)
    first = ledger.post([one])
    seq = link_of(engine, one["transaction_id"]).chain_seq
    assert ledger.post([one]) == first
    assert link_of(engine, one["transaction_id"]).chain_seq == seq
    assert head_of(verified(engine))["seq"] == seq


def test_a_link_cannot_be_rewritten_and_the_head_cannot_move_back(ledger, engine):
    [one] = some_postings(ledger, 1)
    for statement in ("UPDATE ledger.postings SET chain_hash = '\\x00' WHERE "
                      "transaction_id = :t",
                      "UPDATE ledger.chain_heads SET seq = seq - 1 WHERE lane = 0",
                      "UPDATE ledger.chain_heads SET hash = sha256(hash) WHERE lane = 0",
                      "INSERT INTO ledger.chain_heads (lane, seq, hash) "
                      "VALUES (99, 5, sha256(''))",
                      "DELETE FROM ledger.chain_heads",
                      "TRUNCATE ledger.chain_heads"):
        with pytest.raises(IntegrityError), engine.begin() as connection:
            connection.execute(text(statement), {"t": one})
    assert verified(engine)["valid"] is True


# --- tampering, found at exactly the posting ---------------------------------------------


def test_an_entry_changed_behind_the_ledgers_back_breaks_exactly_its_postings_link(
        ledger, engine):
    ids = some_postings(ledger, 6)
    victim = ids[3]
    seq = link_of(engine, victim).chain_seq
    with triggers_off(engine, "ledger.entries") as connection:
        connection.execute(text("UPDATE ledger.entries SET amount = amount + 1 WHERE "
                                "transaction_id = :t AND amount > 0"), {"t": victim})
    try:
        report = verified(engine)
        assert report["valid"] is False
        assert report["first_broken"]["seq"] == seq
        assert report["first_broken"]["lane"] == 0
        assert report["first_broken"]["transaction_id"] == victim
        assert report["first_broken"]["reason"] == "hash_mismatch"
        # Each link is checked against the stored hash before it: only the changed one breaks.
        assert report["broken_links"] == 1
        # Verified from a checkpoint after it, the rest of the chain holds.
        assert verified(engine, checkpoint={0: seq})["valid"] is True
    finally:
        with triggers_off(engine, "ledger.entries") as connection:
            connection.execute(text("UPDATE ledger.entries SET amount = amount - 1 WHERE "
                                    "transaction_id = :t AND amount > 0"), {"t": victim})
    assert verified(engine)["valid"] is True


@pytest.mark.parametrize("change, undo", [
    ("UPDATE ledger.postings SET amount = amount + 1 WHERE transaction_id = :t",
     "UPDATE ledger.postings SET amount = amount - 1 WHERE transaction_id = :t"),
    ("UPDATE ledger.postings SET posted_at = posted_at - interval '1 day' "
     "WHERE transaction_id = :t",
     "UPDATE ledger.postings SET posted_at = posted_at + interval '1 day' "
     "WHERE transaction_id = :t"),
    ("UPDATE ledger.postings SET chain_hash = sha256(chain_hash) WHERE transaction_id = :t",
     None),
])
def test_a_posting_or_its_hash_changed_breaks_its_link(ledger, engine, change, undo):
    ids = some_postings(ledger, 3)
    victim = ids[1]
    _, seq, original = link_of(engine, victim)
    with triggers_off(engine, "ledger.postings") as connection:
        connection.execute(text(change), {"t": victim})
    try:
        broken = verified(engine)["first_broken"]
        assert (broken["seq"], broken["transaction_id"]) == (seq, victim)
    finally:
        with triggers_off(engine, "ledger.postings") as connection:
            if undo:
                connection.execute(text(undo), {"t": victim})
            else:
                connection.execute(text("UPDATE ledger.postings SET chain_hash = :h WHERE "
                                        "transaction_id = :t"), {"t": victim, "h": original})
    assert verified(engine)["valid"] is True


def test_a_deleted_posting_is_a_missing_link(ledger, engine):
    ids = some_postings(ledger, 3)
    victim = ids[1]
    seq = link_of(engine, victim).chain_seq
    with engine.connect() as connection:
        row = dict(connection.execute(select(postings).where(
            postings.c.transaction_id == victim)).one()._mapping)
    with triggers_off(engine, "ledger.postings") as connection:
        connection.execute(postings.delete().where(postings.c.transaction_id == victim))
    try:
        report = verified(engine)
        assert report["first_broken"] == dict(report["first_broken"], lane=0, seq=seq,
                                              transaction_id=None, reason="missing")
        assert report["broken_links"] == 1
    finally:
        with engine.begin() as connection:
            connection.execute(postings.insert().values(**row))
    assert verified(engine)["valid"] is True


def test_the_newest_postings_removed_leave_the_head_pointing_past_the_chain(ledger, engine):
    ids = some_postings(ledger, 2)
    seq = link_of(engine, ids[-1]).chain_seq
    with engine.connect() as connection:
        row = dict(connection.execute(select(postings).where(
            postings.c.transaction_id == ids[-1])).one()._mapping)
    with triggers_off(engine, "ledger.postings") as connection:
        connection.execute(postings.delete().where(postings.c.transaction_id == ids[-1]))
    try:
        broken = verified(engine)["first_broken"]
        assert (broken["seq"], broken["reason"]) == (seq, "head_mismatch")
    finally:
        with engine.begin() as connection:
            connection.execute(postings.insert().values(**row))
    assert verified(engine)["valid"] is True


def test_entries_of_no_posting_are_outside_the_chain(ledger, engine):
    alice = open_account(ledger)
    forged = new_id()
    with engine.begin() as connection:
        connection.execute(entries.insert().values(
            id=new_id(), transaction_id=forged, account_id=alice, currency="USD",
            amount=5, balance_after=5, account_seq=99))
    try:
        report = verified(engine)
        assert report["valid"] is False and report["entries_outside_chain"] == 1
        assert report["first_broken"] is None  # every link holds; the forgery is beside it
    finally:
        with triggers_off(engine, "ledger.entries") as connection:
            connection.execute(entries.delete().where(entries.c.transaction_id == forged))
    assert verified(engine)["valid"] is True


def test_paysys_reconcile_names_the_changed_posting_and_exits_1(ledger, engine, chain_url,
                                                                service_config):
    # Four transfers to a fresh account: each credit's balance_after is its own amount.
    alice = open_account(ledger)
    ledger.post([deposit(alice, 10_000)])
    ids = []
    for amount in (11, 12, 13, 14):
        one = posting(alice, open_account(ledger), amount)
        assert ledger.post([one])[0]["status"] == "posted"
        ids.append(one["transaction_id"])
    victim = ids[2]
    seq = link_of(engine, victim).chain_seq
    with running_broker() as broker:
        config = dict(service_config)
        config["database"] = dict(service_config["database"], url=chain_url)
        config["kafka"] = dict(service_config["kafka"],
                               bootstrap_servers=broker.bootstrap_servers,
                               ledger_topic="ledger.chain.{}".format(uuid.uuid4().hex[:12]),
                               request_timeout_ms=1000)
        config["ledger"] = dict(service_config["ledger"], reconcile_wait_ms=0)
        with triggers_off(engine, "ledger.entries") as connection:
            connection.execute(text("UPDATE ledger.entries SET balance_after = 0 WHERE "
                                    "transaction_id = :t AND amount > 0"), {"t": victim})
        out, err = io.StringIO(), io.StringIO()
        status = cli_reconcile.run(config, out=out, err=err)
        assert status == 1, out.getvalue() + err.getvalue()
        assert "Hash chain: BROKEN" in out.getvalue()
        assert "first broken link: lane 0 posting #{} (transaction {}): hash_mismatch".format(
            seq, victim) in out.getvalue()
        # The worker's RPC (GET /v1/ledger/reconciliation) says the same.
        report = worker_factory(LedgerService, db=DatabaseAccess(engine, "ledger"),
                                config=config).reconciliation()
        assert report["balanced"] is False
        assert report["chain"]["first_broken"]["seq"] == seq
        assert report["chain"]["first_broken"]["transaction_id"] == victim
        # The books' sums still agree: only the chain saw the change.
        assert report["discrepancies"] == []
    with triggers_off(engine, "ledger.entries") as connection:
        connection.execute(text("UPDATE ledger.entries SET balance_after = amount WHERE "
                                "transaction_id = :t AND amount > 0"), {"t": victim})
    assert verified(engine)["valid"] is True


# --- concurrency ------------------------------------------------------------------------------


def lanes_are_whole(engine, report):
    """Every lane holds exactly the places 1…head, each once."""
    with engine.connect() as connection:
        for head in report["heads"]:
            seqs = connection.execute(select(postings.c.chain_seq).where(
                postings.c.chain_lane == head["lane"]).order_by(
                postings.c.chain_seq)).scalars().all()
            assert seqs == list(range(1, head["seq"] + 1)), head["lane"]


def test_concurrent_batches_keep_every_lane_unbroken(ledger, engine):
    # Batches of disjoint accounts (no balances lock shared: only the chain orders them)
    # and of overlapping ones, at once, each on its own connection.
    before = verified(engine)
    accounts = [open_account(ledger) for _ in range(8)]
    ledger.post([deposit(account, 1_000_000) for account in accounts])
    rounds, size = 6, 5

    def payer(index):
        source, destination = accounts[index], accounts[(index + 1) % len(accounts)]
        posted = 0
        for _ in range(rounds):
            results = worker_factory(LedgerService, db=DatabaseAccess(engine, "ledger")).post(
                [posting(source, destination, 1 + n) for n in range(size - 1)]
                + [withdrawal(source, 1)])
            posted += sum(result["status"] == "posted" for result in results)
        return posted

    outcomes = run_together(*[lambda index=index: payer(index)
                              for index in range(len(accounts))])
    assert all(isinstance(outcome, int) for outcome in outcomes), outcomes
    assert sum(outcomes) == len(accounts) * rounds * size
    report = verified(engine)
    assert report["valid"] is True, report
    assert report["postings_checked"] == (before["postings_checked"] + len(accounts)
                                          + sum(outcomes))
    lanes_are_whole(engine, report)


@contextmanager
def lanes_held(engine, where):
    """Another transaction holding the head rows of the lanes ``where`` picks."""
    with engine.begin() as connection:
        connection.execute(text("SELECT lane FROM ledger.chain_heads WHERE {} FOR UPDATE"
                                .format(where)))
        yield


def test_a_batch_takes_a_free_lane_rather_than_wait_for_a_busy_one(ledger, engine):
    account = open_account(ledger)
    one = deposit(account, 10)
    with lanes_held(engine, "lane IN (0, 1)"):
        assert ledger.post([one])[0]["status"] == "posted"  # no wait: lane 2 is free
        assert link_of(engine, one["transaction_id"]).chain_lane == 2
    report = verified(engine)
    assert report["valid"] is True
    lanes_are_whole(engine, report)


def test_a_change_in_another_lane_is_named_by_its_lane(ledger, engine):
    one = deposit(open_account(ledger), 10)
    with lanes_held(engine, "lane < 5"):
        ledger.post([one])
    lane, seq, _ = link_of(engine, one["transaction_id"])
    assert lane == 5
    with triggers_off(engine, "ledger.entries") as connection:
        connection.execute(text("UPDATE ledger.entries SET account_seq = account_seq + 100 "
                                "WHERE transaction_id = :t AND amount > 0"),
                           {"t": one["transaction_id"]})
    try:
        broken = verified(engine)["first_broken"]
        assert (broken["lane"], broken["seq"], broken["transaction_id"]) == (
            5, seq, one["transaction_id"])
    finally:
        with triggers_off(engine, "ledger.entries") as connection:
            connection.execute(text("UPDATE ledger.entries SET account_seq = account_seq - 100 "
                                    "WHERE transaction_id = :t AND amount > 0"),
                               {"t": one["transaction_id"]})
    assert verified(engine)["valid"] is True


def test_a_batch_waits_for_a_lane_when_every_lane_is_busy(ledger, engine):
    one = deposit(open_account(ledger), 10)
    with lanes_held(engine, "true"):
        posting_ = eventlet.spawn(ledger.post, [one])
        wait_for_a_lock_wait(engine)  # it waits for a lane, posting nothing meanwhile
        assert count(engine, postings, transaction_id=one["transaction_id"]) == 0
    assert posting_.wait()[0]["status"] == "posted"
    report = verified(engine)
    assert report["valid"] is True
    lanes_are_whole(engine, report)


# --- the migration ------------------------------------------------------------------------------


def test_the_migration_chains_the_postings_made_before_it():
    name = "paysys_unit_chain_migration_{}".format(os.getpid())
    with migrated_database(name) as url:
        ledger_service = BY_NAME["ledger"]
        config = alembic_config(ledger_service, url)
        command.downgrade(config, "ledger_0007")
        with pooled_engine(url, "paysys-tests-chain-migration") as engine:
            made = []
            with engine.begin() as connection:
                for index, moment in enumerate(("2026-01-02T00:00:00Z",
                                                "2026-01-01T00:00:00Z",
                                                "2026-01-01T00:00:00Z")):
                    transaction_id, account = new_id(), new_id()
                    settlement = new_id()
                    connection.execute(text(
                        "INSERT INTO ledger.postings VALUES "
                        "(:t, 'deposit', 'USD', :a, :s, :c, :at)"),
                        {"t": transaction_id, "a": 10 + index, "s": settlement, "c": account,
                         "at": moment})
                    for line_account, amount in ((settlement, -10 - index),
                                                 (account, 10 + index)):
                        connection.execute(entries.insert().values(
                            id=new_id(), transaction_id=transaction_id, currency="USD",
                            account_id=line_account, amount=amount, balance_after=amount,
                            account_seq=1, created_at=moment))
                    made.append((moment, transaction_id))
            migrate(url, report=lambda line: None)
            report = verified(engine)
            assert report["valid"] is True, report
            assert report["postings_checked"] == head_of(report)["seq"] == 3
            assert [tuple(link_of(engine, transaction_id)[:2])
                    for _, transaction_id in sorted(made)] == [(0, 1), (0, 2), (0, 3)]
            assert all(head["seq"] == 0 for head in report["heads"][1:])
            # And new postings carry on from there.
            service = worker_factory(LedgerService, db=DatabaseAccess(engine, "ledger"))
            service.post([deposit(open_account(service), 5)])
            report = verified(engine)
            assert head_of(report)["seq"] == 4 and report["valid"] is True
