"""Releasing and settling authorization holds in the ledger against a real PostgreSQL:
a release frees the hold and is idempotent, a settled hold never changes again (an active
one only by settling), and captures and releases racing each other settle a hold once."""
import pytest
from nameko.testing.services import worker_factory
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from services.ledger.service import LedgerService
from shared.db import DatabaseAccess
from tests.support.concurrency import run_together
from tests.support.ledger import (  # noqa: F401 - fixtures
    authorization,
    capture,
    funded,
    hold_row,
    new_id,
    post,
    service,
    state,
    withdrawal,
)


# --- releasing ---------------------------------------------------------------------------


def test_a_release_frees_the_hold_and_is_idempotent(service, engine):
    payer, merchant = funded(service, 100)
    one = authorization(payer, merchant, 70)
    post(service, one)
    hold_id = one["transaction_id"]
    assert service.release_hold(hold_id) == {"transaction_id": hold_id, "status": "released"}
    assert state(service, payer, merchant) == [
        {"balance": 100, "held": 0}, {"balance": 0, "held": 0}]
    row = hold_row(engine, hold_id)
    assert row.status == "released" and row.settled_at is not None and row.settled_by is None
    assert service.release_hold(hold_id) == {"transaction_id": hold_id, "status": "released"}
    assert service.release_hold(hold_id.upper())["status"] == "released"
    assert state(service, payer) == [{"balance": 100, "held": 0}]
    assert post(service, withdrawal(payer, 100))["status"] == "posted"


def test_releasing_a_captured_hold_answers_captured_and_frees_nothing(service):
    payer, merchant = funded(service, 100)
    one = authorization(payer, merchant, 70)
    post(service, one)
    post(service, authorization(payer, merchant, 30))
    post(service, capture(payer, merchant, 70, one["transaction_id"]))
    assert service.release_hold(one["transaction_id"]) == {
        "transaction_id": one["transaction_id"], "status": "captured"}
    assert state(service, payer) == [{"balance": 30, "held": 30}]


def test_releasing_no_hold_answers_unknown(service):
    assert service.release_hold(new_id())["status"] == "unknown"
    assert service.release_hold("not-a-uuid")["status"] == "unknown"
    assert service.release_hold(None)["status"] == "unknown"


# --- settling once -----------------------------------------------------------------------


@pytest.mark.parametrize("statement", [
    "UPDATE ledger.holds SET status = 'held', settled_at = NULL, settled_by = NULL"
    " WHERE transaction_id = :t",
    "UPDATE ledger.holds SET status = 'captured', settled_by = gen_random_uuid()"
    " WHERE transaction_id = :t",
    "UPDATE ledger.holds SET amount = 1 WHERE transaction_id = :t",
    "DELETE FROM ledger.holds WHERE transaction_id = :t",
    "TRUNCATE ledger.holds",
])
def test_a_settled_hold_cannot_change_again(service, engine, statement):
    payer, merchant = funded(service, 100)
    one = authorization(payer, merchant, 70)
    post(service, one)
    service.release_hold(one["transaction_id"])
    with pytest.raises(IntegrityError, match="immutable"), engine.begin() as connection:
        connection.execute(text(statement), {"t": one["transaction_id"]})
    assert hold_row(engine, one["transaction_id"]).status == "released"


@pytest.mark.parametrize("statement", [
    "UPDATE ledger.holds SET amount = 1 WHERE transaction_id = :t",
    "UPDATE ledger.holds SET account_id = gen_random_uuid() WHERE transaction_id = :t",
    "DELETE FROM ledger.holds WHERE transaction_id = :t",
])
def test_an_active_hold_changes_only_by_settling(service, engine, statement):
    payer, merchant = funded(service, 100)
    one = authorization(payer, merchant, 70)
    post(service, one)
    with pytest.raises(IntegrityError, match="immutable"), engine.begin() as connection:
        connection.execute(text(statement), {"t": one["transaction_id"]})
    assert hold_row(engine, one["transaction_id"]).amount == 70


# --- races -------------------------------------------------------------------------------


@pytest.mark.parametrize("round", range(5))
def test_a_capture_and_a_release_racing_settle_the_hold_once(engine, round):
    def ledger():
        return worker_factory(LedgerService, db=DatabaseAccess(engine, "ledger"))

    service = ledger()
    payer, merchant = funded(service, 100)
    one = authorization(payer, merchant, 80)
    post(service, one)
    hold_id = one["transaction_id"]
    taking = capture(payer, merchant, 50, hold_id)
    calls = [lambda: ledger().post([taking]), lambda: ledger().release_hold(hold_id)]
    if round % 2:
        calls.reverse()
    outcomes = run_together(*calls)
    if round % 2:
        outcomes.reverse()
    assert not any(isinstance(outcome, Exception) for outcome in outcomes), outcomes
    [captured], released = outcomes
    row = hold_row(engine, hold_id)
    if captured["status"] == "posted":
        assert released["status"] == "captured" and row.status == "captured"
        assert state(service, payer, merchant) == [
            {"balance": 50, "held": 0}, {"balance": 50, "held": 0}]
    else:
        assert captured["reason"] == "hold_not_active"
        assert released["status"] == "released" and row.status == "released"
        assert state(service, payer, merchant) == [
            {"balance": 100, "held": 0}, {"balance": 0, "held": 0}]


def test_many_captures_and_releases_racing_settle_the_hold_once(engine):
    def ledger():
        return worker_factory(LedgerService, db=DatabaseAccess(engine, "ledger"))

    service = ledger()
    payer, merchant = funded(service, 100)
    one = authorization(payer, merchant, 80)
    post(service, one)
    hold_id = one["transaction_id"]
    calls = []
    for _ in range(4):
        calls.append(lambda: ledger().post([capture(payer, merchant, 80, hold_id)])[0])
        calls.append(lambda: ledger().release_hold(hold_id))
    outcomes = run_together(*calls)
    assert not any(isinstance(outcome, Exception) for outcome in outcomes), outcomes
    wins = [o for o in outcomes[0::2] if o["status"] == "posted"] + \
        [o for o in outcomes[1::2] if o["status"] == "released"]
    row = hold_row(engine, hold_id)
    assert row.status in ("captured", "released")
    # Every release answers the one outcome; at most one capture posted.
    assert all(o["status"] == row.status for o in outcomes[1::2])
    assert len([o for o in outcomes[0::2] if o["status"] == "posted"]) \
        == (1 if row.status == "captured" else 0)
    assert wins
    [payer_state] = state(service, payer)
    assert payer_state["held"] == 0
    assert payer_state["balance"] == (20 if row.status == "captured" else 100)


def test_a_capture_and_a_release_that_both_saw_the_hold_active_settle_it_once(engine):
    # Held together after their first statement: the release has read the hold as held
    # (without a lock), the capture has locked the accounts. The balances row lock and
    # the conditional settlement decide.
    from tests.support.ledger_locks import GatedDatabase

    service = worker_factory(LedgerService, db=DatabaseAccess(engine, "ledger"))
    payer, merchant = funded(service, 100)
    one = authorization(payer, merchant, 80)
    post(service, one)
    hold_id = one["transaction_id"]
    gate = GatedDatabase(engine, parties=2)
    outcomes = run_together(
        lambda: worker_factory(LedgerService, db=gate).post(
            [capture(payer, merchant, 80, hold_id)]),
        lambda: worker_factory(LedgerService, db=gate).release_hold(hold_id))
    assert not any(isinstance(outcome, Exception) for outcome in outcomes), outcomes
    [captured], released = outcomes
    status = hold_row(engine, hold_id).status
    assert released["status"] == status
    assert (captured["status"] == "posted") == (status == "captured")
    [payer_state] = state(service, payer)
    assert payer_state == {"balance": 20 if status == "captured" else 100, "held": 0}
