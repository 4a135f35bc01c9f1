"""The transactions service's consensus pipeline in-process: the real pipeline, ledger and
validators (``worker_factory``, real PostgreSQL and Redis), but not the RPC transport.

What this replaces, so that what it proves is clear:
- RPC over RabbitMQ: calls go straight to in-process workers (``Local``), with no AMQP, no
  deadline and no circuit breaker (tests/system/ has the same paths over the real broker);
- the batch's greenthread: a plain ``eventlet.spawn`` (``InProcessConsensus``);
- in two tests, one service by a hand-written stand-in: a dead or forging validator, and a
  ledger that refuses every posting (``LedgerDown``: it raises before posting, so it cannot
  show a posting whose reply was lost — the system tests do that).
"""
import uuid

import pytest
from nameko.testing.services import worker_factory
from sqlalchemy import text

from services.ledger.service import LedgerService
from services.transactions import events
from services.transactions.service import TransactionsService
from shared.commands import Movement, TransferBatch
from shared.db import DatabaseAccess
from shared.errors import NotFound, ServiceUnavailable
from shared.event_outbox import BATCH_EVENT
from shared.outbox_relay.events import event_relay
from shared.votes import ensure_validator_keys, sign_vote
from tests.support.workers import InProcessConsensus, ValidatorWorkers
from tests.unit.test_ledger_postings import stored_result

POOL = ("validator_1", "validator_2", "validator_3")


class Local:
    """The RPC directory of ``shared.rpc``, calling in-process workers instead."""

    def __init__(self, workers):
        self.workers = workers

    def __getitem__(self, name):
        return Local.Proxy(self.workers[name])

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return self[name]

    class Proxy:
        def __init__(self, worker):
            self.worker = worker

        def __getattr__(self, method):
            def call(*args, timeout_s=None, breaker=True, **kwargs):
                return getattr(self.worker, method)(*args, **kwargs)
            return call


class Dead:
    """A validator that never answers: its calls end in the RPC deadline's 503."""

    def vote(self, items):
        raise ServiceUnavailable("validator did not answer")


class Forger:
    """A validator that signs with a key that is not its own."""

    def __init__(self, name):
        self.name = name

    def vote(self, items):
        return [sign_vote(b"not my key" * 4, item["id"], self.name, "approve", [])
                for item in items]


@pytest.fixture
def config(service_config, tmp_path):
    service_config["validators"].update(keys_dir=str(tmp_path / "keys"), pool_size=3)
    service_config["transactions"].update(decision_wait_ms=3000, vote_deadline_ms=1000,
                                          undecided_timeout_s=30)
    ensure_validator_keys(service_config)
    return service_config


@pytest.fixture
def system(config, engine):
    validators = ValidatorWorkers(config)
    workers = {name: validators.worker(name) for name in POOL}
    workers["ledger"] = worker_factory(LedgerService, db=DatabaseAccess(engine, "ledger"))
    transactions = worker_factory(
        TransactionsService, db=DatabaseAccess(engine, "transactions"),
        consensus=InProcessConsensus(config, engine, Local(workers)))
    transactions.workers = workers
    yield transactions
    validators.stop()


def open_account(system, owner, currency="USD"):
    return system.workers["ledger"].create_account(owner, currency)["id"]


def balance(system, account_id):
    return system.workers["ledger"].get_account(account_id)["balance"]


FRESH = object()


def movement(kind, owner, source, destination, amount=1_000, key=FRESH, **more):
    """A movement under a fresh idempotency key (``key=None``: none, as batch items have)."""
    return Movement(kind=kind, initiator_id=owner, source_account_id=source,
                    destination_account_id=destination, amount=amount, currency="USD",
                    idempotency_key=str(uuid.uuid4()) if key is FRESH else key, **more)


def submit(system, kind, owner, source, destination, amount=1_000, key=FRESH):
    return system.submit(movement(kind, owner, source, destination, amount, key).to_wire())


def transfer(system, owner, source, destination, amount=1_000, key=FRESH):
    return submit(system, "transfer", owner, source, destination, amount, key)


@pytest.fixture
def funded(system):
    owner = str(uuid.uuid4())
    source, destination = open_account(system, owner), open_account(system, owner)
    deposited = submit(system, "deposit", owner, None, source, 10_000)
    assert deposited["status"] == "completed", deposited
    return owner, source, destination


def steps(engine, transaction_id):
    with engine.connect() as connection:
        return connection.execute(text(
            "SELECT step FROM transactions.transaction_steps WHERE transaction_id = :id "
            "ORDER BY id"), {"id": transaction_id}).scalars().all()


def test_an_approved_transfer_is_posted_and_its_row_tells_its_way(system, funded, engine):
    owner, source, destination = funded
    transaction = transfer(system, owner, source, destination)
    assert (transaction["status"], transaction["failure_reason"]) == ("completed", None)
    assert {vote["validator_id"] for vote in transaction["votes"]} <= set(POOL)
    assert len(transaction["votes"]) >= 2
    assert (balance(system, source), balance(system, destination)) == (9_000, 1_000)
    with engine.connect() as connection:
        row = connection.execute(text(
            "SELECT decision, created_at <= decided_at AND decided_at <= completed_at, "
            "source_version, destination_version FROM transactions.transactions "
            "WHERE id = :id"), {"id": transaction["id"]}).one()
    assert tuple(row) == ("approve", True, 1, 1)  # the versions the validators judged
    assert steps(engine, transaction["id"]) == []  # nothing out of the ordinary


def test_one_dead_validator_does_not_stop_the_pool(system, funded):
    owner, source, destination = funded
    system.workers["validator_3"] = Dead()
    transaction = transfer(system, owner, source, destination)
    assert transaction["status"] == "completed"
    assert {vote["validator_id"] for vote in transaction["votes"]} == {"validator_1",
                                                                       "validator_2"}


def test_without_a_quorum_the_transaction_fails_and_moves_nothing(system, funded):
    owner, source, destination = funded
    system.workers["validator_2"] = Dead()
    system.workers["validator_3"] = Dead()
    transaction = transfer(system, owner, source, destination)
    assert (transaction["status"], transaction["failure_reason"]) == ("failed", "no_quorum")
    assert (balance(system, source), balance(system, destination)) == (10_000, 0)


def test_forged_votes_do_not_make_a_quorum(system, funded):
    owner, source, destination = funded
    system.workers["validator_2"] = Forger("validator_2")
    system.workers["validator_3"] = Dead()
    transaction = transfer(system, owner, source, destination)
    assert (transaction["status"], transaction["failure_reason"]) == ("failed", "no_quorum")
    assert [vote["validator_id"] for vote in transaction["votes"]] == ["validator_1"]
    assert balance(system, destination) == 0


def test_a_rejection_by_the_majority_fails_with_its_reason(system, funded):
    owner, source, destination = funded
    transaction = transfer(system, owner, source, destination, 10_001)
    assert (transaction["status"], transaction["failure_reason"]) == ("failed",
                                                                      "insufficient_funds")
    assert balance(system, source) == 10_000


def test_the_same_idempotency_key_gives_the_same_transaction_and_moves_once(system, funded):
    owner, source, destination = funded
    first = transfer(system, owner, source, destination, key="k-1")
    again = transfer(system, owner, source, destination, key="k-1")
    assert again["id"] == first["id"]
    assert balance(system, destination) == 1_000


def test_another_users_source_account_is_not_found(system, funded):
    _, source, destination = funded
    with pytest.raises(NotFound):
        transfer(system, str(uuid.uuid4()), source, destination)


def take_the_ledger_down(system):
    """Put ``LedgerDown`` in the ledger's place: it answers snapshots and refuses every
    posting. The real ledger, to put back."""
    ledger = system.workers["ledger"]
    system.workers["ledger"] = type("LedgerDown", (), {
        "snapshot": ledger.snapshot,
        "post": lambda self, postings, atomic=False: (_ for _ in ()).throw(
            ServiceUnavailable("ledger down")),
    })()
    return ledger


def test_recovery_posts_an_approved_transaction_whose_posting_was_lost(system, funded, engine):
    owner, source, destination = funded
    ledger = take_the_ledger_down(system)
    transaction = transfer(system, owner, source, destination)
    assert transaction["status"] == "pending"  # approved, not posted
    system.workers["ledger"] = ledger
    with engine.begin() as connection:  # as if it had been approved a while ago
        connection.execute(text("UPDATE transactions.transactions SET decided_at = "
                                "decided_at - interval '1 minute' WHERE id = :id"),
                           {"id": transaction["id"]})
    system.recover()
    system.recover()  # and again: a second recovery posts nothing twice
    assert system.get(transaction["id"])["status"] == "completed"
    assert steps(engine, transaction["id"]) == ["posted"]  # by the recovery, once
    assert (balance(system, source), balance(system, destination)) == (9_000, 1_000)
    assert len(stored_result(engine, transaction["id"])["entries"]) == 2


def test_in_flight_lists_exactly_the_pending_transactions(system, funded, engine):
    owner, source, destination = funded

    def in_flight_and_pending():
        with engine.connect() as connection:
            listed = set(connection.execute(text(
                "SELECT transaction_id FROM transactions.in_flight")).scalars())
            pending = set(connection.execute(text(
                "SELECT id FROM transactions.transactions WHERE status = 'pending'")).scalars())
        return listed, pending

    completed = transfer(system, owner, source, destination)
    rejected = transfer(system, owner, source, destination, amount=50_000)
    ledger = take_the_ledger_down(system)
    stuck = transfer(system, owner, source, destination)
    assert [t["status"] for t in (completed, rejected, stuck)] == ["completed", "failed",
                                                                   "pending"]
    listed, pending = in_flight_and_pending()
    assert stuck["id"] in listed and listed == pending
    system.workers["ledger"] = ledger
    with engine.begin() as connection:
        connection.execute(text("UPDATE transactions.transactions SET decided_at = "
                                "decided_at - interval '1 minute' WHERE id = :id"),
                           {"id": stuck["id"]})
    system.recover()
    assert system.get(stuck["id"])["status"] == "completed"
    assert in_flight_and_pending() == (set(), set())


def test_recovery_fails_a_transaction_left_undecided_by_a_crash(system, funded, engine):
    owner, source, destination = funded
    with engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO transactions.transactions (id, type, status, initiator_id, "
            "idempotency_key, source_account_id, destination_account_id, amount, currency, "
            "created_at) VALUES (:id, 'transfer', 'pending', :owner, :key, :s, :d, 5, 'USD', "
            "now() - interval '5 minutes')"),
            {"id": str(uuid.uuid4()), "owner": owner, "key": "crashed", "s": source,
             "d": destination})
        crashed = connection.execute(text(
            "SELECT id FROM transactions.transactions WHERE idempotency_key = 'crashed' "
            "AND initiator_id = :owner"), {"owner": owner}).scalar_one()
    system.recover()
    failed = system.get(crashed)
    assert (failed["status"], failed["failure_reason"]) == ("failed", "decision_timeout")
    assert balance(system, destination) == 0


def test_recovery_decides_again_a_transaction_whose_vote_round_died(system, funded, engine):
    owner, source, destination = funded
    with engine.begin() as connection:  # received 20 s ago by a process that then died
        stranded = connection.execute(text(
            "INSERT INTO transactions.transactions (id, type, status, initiator_id, "
            "idempotency_key, source_account_id, destination_account_id, source_owner_id, "
            "destination_owner_id, amount, currency, created_at) VALUES (:id, 'transfer', "
            "'pending', :owner, 'stranded', :s, :d, :owner, :owner, 700, 'USD', "
            "now() - interval '20 seconds') RETURNING id"),
            {"id": str(uuid.uuid4()), "owner": owner, "s": source, "d": destination},
        ).scalar_one()
    system.recover()
    system.recover()  # and again: nothing moves twice
    decided = system.get(stranded)
    assert (decided["status"], len(decided["votes"]) >= 2) == ("completed", True)
    assert (balance(system, source), balance(system, destination)) == (9_300, 700)


def test_every_finished_transaction_queues_one_event_that_the_relay_sends_once(
        system, funded, engine):
    owner, source, destination = funded
    done = transfer(system, owner, source, destination)
    refused = transfer(system, owner, source, destination, 10**6)
    sent = []
    relay = event_relay(engine, events.outbox, lambda kind, payload: sent.append((kind, payload)),
                        interval_s=0.2)
    while relay.step():
        pass
    assert {kind for kind, _ in sent} == {BATCH_EVENT}
    ours = {event["data"]["id"]: event for _, payload in sent for event in payload["events"]}
    assert ours[done["id"]]["type"] == "transaction.completed"
    assert ours[refused["id"]]["type"] == "transaction.failed"
    assert ours[done["id"]]["data"] == done
    assert ours[done["id"]]["user_ids"] == [owner]
    assert relay.step() == 0


class MeddlingLedger:
    """The real ledger, but an admin changes an account right after it answers the
    snapshot: the validators judge the account as it was, the posting meets it as it is."""

    def __init__(self, ledger, change):
        self.ledger, self.change = ledger, change

    def snapshot(self, account_ids):
        answer = self.ledger.snapshot(account_ids)
        self.change()
        return answer

    def __getattr__(self, name):
        return getattr(self.ledger, name)


def test_an_account_frozen_between_the_vote_and_the_posting_fails_the_transfer(
        system, funded):
    owner, source, destination = funded
    ledger = system.workers["ledger"]
    system.workers["ledger"] = MeddlingLedger(
        ledger, lambda: ledger.set_status(destination, "frozen"))
    transaction = transfer(system, owner, source, destination)
    assert (transaction["status"], transaction["failure_reason"]) == ("failed",
                                                                      "account_frozen")
    assert (balance(system, source), balance(system, destination)) == (10_000, 0)


def test_an_account_changed_between_the_vote_and_the_posting_fails_the_transfer(
        system, funded):
    owner, source, destination = funded
    ledger = system.workers["ledger"]

    def freeze_and_thaw():  # active again, but not the account the validators judged
        ledger.set_status(source, "frozen")
        ledger.set_status(source, "active")

    system.workers["ledger"] = MeddlingLedger(ledger, freeze_and_thaw)
    transaction = transfer(system, owner, source, destination)
    assert (transaction["status"], transaction["failure_reason"]) == ("failed",
                                                                      "account_changed")
    assert (balance(system, source), balance(system, destination)) == (10_000, 0)


# --- many movements at once ---------------------------------------------------------------


def test_submit_many_answers_each_movement_on_its_own(system, funded):
    owner, source, destination = funded
    stranger = str(uuid.uuid4())
    answers = system.submit_many([
        movement("transfer", owner, source, destination, 1_000).to_wire(),
        movement("transfer", stranger, source, destination, 1_000).to_wire(),  # not theirs
        dict(movement("transfer", owner, source, destination).to_wire(), amount=0),
        movement("transfer", owner, source, destination, 50_000).to_wire(),  # too much
    ])
    assert answers[0]["transaction"]["status"] == "completed"
    assert answers[1]["error"]["exc_type"] == "NotFound"
    assert answers[2]["error"]["exc_type"] == "ValidationFailed"
    assert (answers[3]["transaction"]["status"],
            answers[3]["transaction"]["failure_reason"]) == ("failed", "insufficient_funds")
    assert (balance(system, source), balance(system, destination)) == (9_000, 1_000)


def batch(owner, items, atomic=False, key=None):
    return TransferBatch(owner, key or str(uuid.uuid4()), tuple(
        movement("transfer", owner, source, destination, amount, key=None)
        for source, destination, amount in items), atomic).to_wire()


def test_a_batch_applies_its_items_in_order(system, funded):
    owner, source, destination = funded
    third = open_account(system, owner)
    # The second item spends what the first brings: only in this order can it complete.
    done = system.submit_batch(batch(owner, [(source, destination, 6_000),
                                             (destination, third, 5_000),
                                             (source, third, 9_000)]))
    assert done["status"] == "completed" and done["atomic"] is False
    assert [item["status"] for item in done["items"]] == ["completed", "completed", "failed"]
    assert done["items"][2]["failure_reason"] == "insufficient_funds"
    assert done["counts"] == {"completed": 2, "failed": 1, "pending": 0}
    assert [balance(system, account) for account in (source, destination, third)] == [
        4_000, 1_000, 5_000]


def test_an_atomic_batch_moves_all_or_nothing(system, funded):
    owner, source, destination = funded
    refused = system.submit_batch(batch(owner, [(source, destination, 1_000),
                                                (source, destination, 20_000)], atomic=True))
    assert [(item["status"], item["failure_reason"]) for item in refused["items"]] == [
        ("failed", "batch_aborted"), ("failed", "insufficient_funds")]
    assert (balance(system, source), balance(system, destination)) == (10_000, 0)
    done = system.submit_batch(batch(owner, [(source, destination, 1_000),
                                             (destination, source, 500)], atomic=True))
    assert [item["status"] for item in done["items"]] == ["completed", "completed"]
    assert (balance(system, source), balance(system, destination)) == (9_500, 500)


def test_an_atomic_batch_the_ledger_refuses_moves_nothing(system, funded):
    owner, source, destination = funded
    ledger = system.workers["ledger"]
    third = open_account(system, owner)
    # Approved on the snapshot, refused under the ledger's lock: the freeze lands between.
    system.workers["ledger"] = MeddlingLedger(
        ledger, lambda: ledger.set_status(destination, "frozen"))
    refused = system.submit_batch(batch(owner, [(source, third, 1_000),
                                                (source, destination, 1_000)], atomic=True))
    assert [(item["status"], item["failure_reason"]) for item in refused["items"]] == [
        ("failed", "batch_aborted"), ("failed", "account_frozen")]
    assert [balance(system, account) for account in (source, destination, third)] == [
        10_000, 0, 0]


def test_a_replayed_batch_answers_the_same_batch_and_moves_nothing_again(system, funded):
    owner, source, destination = funded
    wire = batch(owner, [(source, destination, 1_000)] * 3, key="batch-1")
    first = system.submit_batch(wire)
    again = system.submit_batch(wire)
    assert again == first
    assert system.get_batch(first["id"], owner) == first
    assert balance(system, destination) == 3_000


def test_a_batch_naming_anothers_account_is_refused_whole(system, funded):
    owner, source, destination = funded
    stranger_account = open_account(system, str(uuid.uuid4()))
    with pytest.raises(NotFound) as raised:
        system.submit_batch(batch(owner, [(source, destination, 1_000),
                                          (stranger_account, destination, 1_000)]))
    assert raised.value.detail.startswith("transfers.1:")
    assert balance(system, destination) == 0
    with pytest.raises(NotFound):
        system.get_batch(str(uuid.uuid4()), owner)


def test_recovery_posts_an_approved_atomic_batch_whole(system, funded, engine):
    owner, source, destination = funded
    ledger = take_the_ledger_down(system)
    pending = system.submit_batch(batch(owner, [(source, destination, 1_000)] * 2,
                                        atomic=True))
    assert pending["status"] == "pending"
    system.workers["ledger"] = ledger
    with engine.begin() as connection:  # as if approved a while ago
        connection.execute(text("UPDATE transactions.transactions SET decided_at = "
                                "decided_at - interval '1 minute' WHERE batch_id = :id"),
                           {"id": pending["id"]})
    system.recover()
    done = system.get_batch(pending["id"], owner)
    assert done["counts"] == {"completed": 2, "failed": 0, "pending": 0}
    assert balance(system, destination) == 2_000


def test_one_transaction_the_ledger_cannot_take_does_not_stall_the_recovery_of_the_rest(
        system, funded, engine):
    owner, source, destination = funded
    ledger = take_the_ledger_down(system)
    poisoned = transfer(system, owner, source, destination, 1_000)
    healthy = transfer(system, owner, source, destination, 2_000)
    assert poisoned["status"] == healthy["status"] == "pending"  # approved, not posted

    class Choking:  # a ledger that fails outright on one posting (a bug, say)
        def __getattr__(self, name):
            return getattr(ledger, name)

        def post(self, postings, atomic=False):
            if any(p["transaction_id"] == poisoned["id"] for p in postings):
                raise RuntimeError("the ledger cannot take this posting")
            return ledger.post(postings, atomic=atomic)

    system.workers["ledger"] = Choking()
    with engine.begin() as connection:  # as if approved a while ago
        connection.execute(text("UPDATE transactions.transactions SET decided_at = "
                                "decided_at - interval '1 minute' WHERE id IN (:a, :b)"),
                           {"a": poisoned["id"], "b": healthy["id"]})
    system.recover()
    assert system.get(healthy["id"])["status"] == "completed"
    assert system.get(poisoned["id"])["status"] == "pending"  # it stalls only itself
    assert balance(system, destination) == 2_000


def test_an_undecided_timeout_shorter_than_the_revote_refuses_to_start(config, engine):
    config["transactions"]["undecided_timeout_s"] = 5
    with pytest.raises(ValueError, match="undecided_timeout_s"):
        InProcessConsensus(config, engine, Local({}))
