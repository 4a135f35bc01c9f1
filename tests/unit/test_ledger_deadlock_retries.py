"""The ledger's retries of a whole batch, against a real PostgreSQL: a batch aborted by
a real deadlock (a rival session takes the row locks in the other order) runs again and
posts once; one that deadlocks on every attempt gives up having moved nothing; other
database errors are not retried, but answered as the caller's 503."""
import eventlet
import psycopg2
import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from services.ledger import batches
from shared.errors import ServiceUnavailable
from harness.servers import wait_for
from tests.support.ledger import (  # noqa: F401 - fixtures
    balance_of,
    deposit,
    new_id,
    open_account,
    post,
    posting,
    service,
)


# --- retries of the whole batch ----------------------------------------------------------


class Rival:
    """Another database session that takes account rows' locks in the opposite order to
    the ledger's, so that PostgreSQL finds a real deadlock and aborts the ledger's batch
    (the one that has waited longer checks first, and gives way)."""

    def __init__(self, database_url, first, second):
        self.connection = psycopg2.connect(database_url, application_name="rival")
        self.cursor = self.connection.cursor()
        self.first, self.second = first, second
        self.lock(second)  # held throughout: the ledger's batch waits for it

    def lock(self, account):
        self.cursor.execute("SELECT 1 FROM ledger.balances WHERE account_id = %s FOR UPDATE",
                            (account,))

    def close_the_cycle(self):
        """Once the ledger holds ``first`` and waits for ``second``: ask for ``first``. The
        cycle is found, the ledger's batch aborted; this session keeps ``second`` only."""
        self.cursor.execute("SAVEPOINT meet")
        self.lock(self.first)
        self.cursor.execute("ROLLBACK TO SAVEPOINT meet")

    def give_way(self):
        self.connection.rollback()
        self.connection.close()


def ledger_waits_for_a_lock(engine):
    with engine.connect() as connection:
        return connection.execute(text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND application_name = 'paysys-tests' AND wait_event_type = 'Lock'")).scalar_one()


def deadlocked_post(service, engine, database_url, deadlocks):
    """A transfer between two accounts posted while a rival makes ``deadlocks`` real
    deadlocks with it; the post's outcome (a result or the error) and the accounts."""
    alice, bob = sorted([open_account(service), open_account(service)])  # lock order
    post(service, deposit(alice, 100))
    rival = Rival(database_url, alice, bob)
    outcome = {}

    def run():
        try:
            outcome["result"] = post(service, posting(alice, bob, 60))
        except Exception as error:  # noqa: BLE001 - the test looks at what it raised
            outcome["error"] = error

    poster = eventlet.spawn(run)
    try:
        for _ in range(deadlocks):
            wait_for(lambda: ledger_waits_for_a_lock(engine), timeout_s=10,
                     interval_s=0.02, what="the ledger waiting for the rival's lock")
            rival.close_the_cycle()
    finally:
        rival.give_way()
    poster.wait()
    return outcome, alice, bob


def test_a_batch_aborted_by_a_real_deadlock_runs_again(service, engine, database_url):
    outcome, alice, bob = deadlocked_post(service, engine, database_url, deadlocks=1)
    assert outcome["result"]["status"] == "posted"
    assert (balance_of(service, alice), balance_of(service, bob)) == (40, 60)
    assert len(service.entries(bob)["items"]) == 1  # posted once, not once per attempt


def test_a_batch_that_deadlocks_on_every_attempt_gives_up_and_moves_nothing(
        service, engine, database_url):
    outcome, alice, bob = deadlocked_post(service, engine, database_url,
                                          deadlocks=batches.ATTEMPTS)
    assert "result" not in outcome
    error = outcome["error"]
    assert getattr(getattr(error, "orig", None), "pgcode", None) == "40P01"  # a deadlock
    assert (balance_of(service, alice), balance_of(service, bob)) == (100, 0)
    assert service.entries(bob)["items"] == []


def test_other_database_errors_are_not_retried(service, monkeypatch):
    calls = []

    def broken(connection, given, atomic=False, look_for_replays=True):
        calls.append(1)
        raise OperationalError("SELECT", {}, Exception("connection lost"))

    monkeypatch.setattr(batches, "post_batch", broken)
    # A lost connection is the caller's 503 (retry later), not a retry here.
    with pytest.raises(ServiceUnavailable):
        service.post([deposit(new_id(), 9)])
    assert len(calls) == 1
