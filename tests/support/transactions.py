"""The transactions service's consensus pipeline in-process, for its tests (test_transactions_*.py):
the real pipeline, ledger and validators (``worker_factory``, real PostgreSQL and Redis),
but not the RPC transport.

What this replaces, so that what the tests prove is clear:
- RPC over RabbitMQ: calls go straight to in-process workers (``Local``), with no AMQP, no
  deadline and no circuit breaker (tests/system/ has the same paths over the real broker);
- the batch's greenthread: a plain ``eventlet.spawn`` (``InProcessConsensus``);
- in some tests, one service by a hand-written stand-in: a dead or forging validator, a
  ledger that refuses every posting (``LedgerDown``: it raises before posting, so it cannot
  show a posting whose reply was lost — the system tests do that), or one that lets an
  account change between the vote and the posting (``MeddlingLedger``)."""
import uuid

import pytest
from nameko.testing.services import worker_factory
from sqlalchemy import text

from services.ledger.service import LedgerService
from services.transactions.service import TransactionsService
from shared.commands import Movement, TransferBatch
from shared.db import DatabaseAccess
from shared.errors import ServiceUnavailable
from shared.votes import SigningKey, ensure_validator_keys, sign_round
from tests.support.workers import InProcessConsensus, ValidatorWorkers


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
        self.key = SigningKey.generate()

    def vote(self, items):
        return sign_round(self.key, self.name, [(item["id"], "approve", []) for item in items])


@pytest.fixture
def config(service_config, tmp_path):
    service_config["validators"].update(keys_dir=str(tmp_path / "keys"), pool_size=3)
    service_config["rpc"].update(decision_wait_ms=3000)
    service_config["transactions"].update(vote_deadline_ms=1000, undecided_timeout_s=30)
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


def batch(owner, items, atomic=False, key=None):
    return TransferBatch(owner, key or str(uuid.uuid4()), tuple(
        movement("transfer", owner, source, destination, amount, key=None)
        for source, destination, amount in items), atomic).to_wire()
