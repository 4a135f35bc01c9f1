"""The transactions service's state machine, with the real ledger, accounts and validators
in-process (``worker_factory``, real PostgreSQL and Redis) in place of RPC over RabbitMQ.

What a dead, lying or slow validator does to a round, and what recovery does to
what a crash left behind: nothing here is mocked but the transport.
"""
import uuid

import pytest
from eventlet.event import Event
from nameko.testing.services import worker_factory
from sqlalchemy import text

from services.accounts.service import AccountsService
from services.ledger.service import LedgerService
from services.transactions import events
from services.transactions.dependencies import ValidatorPool
from services.transactions.service import TransactionsService
from shared.db import DatabaseAccess
from shared.errors import NotFound, ServiceUnavailable
from shared.votes import ensure_validator_keys, sign_vote
from tests.support.workers import ValidatorWorkers, bound

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


class Immediate:
    """The batcher, minus the batching: each transaction runs at once, alone."""

    def submit(self, pipeline, transaction_id, accounts=None):
        done = Event()
        done.send(pipeline.process(transaction_id, accounts))
        return done


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
    workers["accounts"] = worker_factory(AccountsService, db=DatabaseAccess(engine, "accounts"))
    pool = bound(ValidatorPool(), config, "transactions").get_dependency(None)
    transactions = worker_factory(TransactionsService, db=DatabaseAccess(engine, "transactions"),
                                  services=Local(workers), pool=pool, config=config,
                                  batcher=Immediate())
    transactions.workers = workers
    yield transactions
    validators.stop()


def open_account(system, owner, currency="USD"):
    return system.workers["accounts"].create(owner, currency)["id"]


def balance(system, account_id):
    return system.workers["ledger"].balances([account_id])[account_id]["balance"]


def submit(system, kind, owner, body, key=None):
    return system.submit(kind, owner, body, key or str(uuid.uuid4()))


@pytest.fixture
def funded(system):
    owner = str(uuid.uuid4())
    source, destination = open_account(system, owner), open_account(system, owner)
    deposited = submit(system, "deposit", owner, {"account_id": source, "amount": 10_000,
                                                 "currency": "USD"})
    assert deposited["status"] == "completed", deposited
    return owner, source, destination


def transfer_body(source, destination, amount=1_000):
    return {"source_account_id": source, "destination_account_id": destination,
            "amount": amount, "currency": "USD"}


def steps(engine, transaction_id):
    with engine.connect() as connection:
        return connection.execute(text(
            "SELECT step FROM transactions.transaction_steps WHERE transaction_id = :id "
            "ORDER BY id"), {"id": transaction_id}).scalars().all()


def test_an_approved_transfer_is_posted_and_every_step_recorded(system, funded, engine):
    owner, source, destination = funded
    transaction = submit(system, "transfer", owner, transfer_body(source, destination))
    assert (transaction["status"], transaction["failure_reason"]) == ("completed", None)
    assert {vote["validator_id"] for vote in transaction["votes"]} <= set(POOL)
    assert len(transaction["votes"]) >= 2
    assert (balance(system, source), balance(system, destination)) == (9_000, 1_000)
    assert steps(engine, transaction["id"]) == ["received", "decided", "posted"]


def test_one_dead_validator_does_not_stop_the_pool(system, funded):
    owner, source, destination = funded
    system.workers["validator_3"] = Dead()
    transaction = submit(system, "transfer", owner, transfer_body(source, destination))
    assert transaction["status"] == "completed"
    assert {vote["validator_id"] for vote in transaction["votes"]} == {"validator_1",
                                                                       "validator_2"}


def test_without_a_quorum_the_transaction_fails_and_moves_nothing(system, funded):
    owner, source, destination = funded
    system.workers["validator_2"] = Dead()
    system.workers["validator_3"] = Dead()
    transaction = submit(system, "transfer", owner, transfer_body(source, destination))
    assert (transaction["status"], transaction["failure_reason"]) == ("failed", "no_quorum")
    assert (balance(system, source), balance(system, destination)) == (10_000, 0)


def test_forged_votes_do_not_make_a_quorum(system, funded):
    owner, source, destination = funded
    system.workers["validator_2"] = Forger("validator_2")
    system.workers["validator_3"] = Dead()
    transaction = submit(system, "transfer", owner, transfer_body(source, destination))
    assert (transaction["status"], transaction["failure_reason"]) == ("failed", "no_quorum")
    assert [vote["validator_id"] for vote in transaction["votes"]] == ["validator_1"]
    assert balance(system, destination) == 0


def test_a_rejection_by_the_majority_fails_with_its_reason(system, funded):
    owner, source, destination = funded
    transaction = submit(system, "transfer", owner, transfer_body(source, destination, 10_001))
    assert (transaction["status"], transaction["failure_reason"]) == ("failed",
                                                                      "insufficient_funds")
    assert balance(system, source) == 10_000


def test_the_same_idempotency_key_gives_the_same_transaction_and_moves_once(system, funded):
    owner, source, destination = funded
    body = transfer_body(source, destination)
    first = submit(system, "transfer", owner, body, key="k-1")
    again = submit(system, "transfer", owner, body, key="k-1")
    assert again["id"] == first["id"]
    assert balance(system, destination) == 1_000


def test_another_users_source_account_is_not_found(system, funded):
    _, source, destination = funded
    with pytest.raises(NotFound):
        submit(system, "transfer", str(uuid.uuid4()), transfer_body(source, destination))


def test_recovery_posts_an_approved_transaction_whose_posting_was_lost(system, funded, engine):
    owner, source, destination = funded
    ledger = system.workers["ledger"]
    system.workers["ledger"] = type("LedgerDown", (), {
        "balances": ledger.balances,
        "post": lambda self, postings: (_ for _ in ()).throw(ServiceUnavailable("ledger down")),
    })()
    transaction = submit(system, "transfer", owner, transfer_body(source, destination))
    assert transaction["status"] == "pending"  # approved, not posted
    system.workers["ledger"] = ledger
    with engine.begin() as connection:  # as if it had been approved a while ago
        connection.execute(text("UPDATE transactions.transactions SET decided_at = "
                                "decided_at - interval '1 minute' WHERE id = :id"),
                           {"id": transaction["id"]})
    system.recover()
    system.recover()  # and again: a second recovery posts nothing twice
    assert system.get(transaction["id"])["status"] == "completed"
    assert (balance(system, source), balance(system, destination)) == (9_000, 1_000)
    assert len(ledger.posting(transaction["id"])["entries"]) == 2


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
    done = submit(system, "transfer", owner, transfer_body(source, destination))
    refused = submit(system, "transfer", owner, transfer_body(source, destination, 10**6))
    sent = []
    while events.relay(system.db, lambda kind, payload: sent.append((kind, payload))):
        pass
    ours = {payload["data"]["id"]: (kind, payload) for kind, payload in sent}
    assert ours[done["id"]][0] == "transaction.completed"
    assert ours[refused["id"]][0] == "transaction.failed"
    assert ours[done["id"]][1]["data"] == done
    assert ours[done["id"]][1]["user_ids"] == [owner]
    assert events.relay(system.db, lambda kind, payload: sent.append(payload)) == 0


class FreezingValidator:
    """Votes like the real one, but an admin freezes the destination while it does."""

    def __init__(self, validator, accounts, account_id):
        self.validator, self.accounts, self.account_id = validator, accounts, account_id

    def vote(self, items):
        self.accounts.set_status(self.account_id, "frozen")
        return self.validator.vote(items)


def test_an_account_changed_between_the_vote_and_the_posting_fails_the_transfer(
        system, funded):
    owner, source, destination = funded
    system.workers["validator_1"] = FreezingValidator(
        system.workers["validator_1"], system.workers["accounts"], destination)
    transaction = submit(system, "transfer", owner, transfer_body(source, destination))
    assert (transaction["status"], transaction["failure_reason"]) == ("failed",
                                                                      "account_changed")
    assert (balance(system, source), balance(system, destination)) == (10_000, 0)
