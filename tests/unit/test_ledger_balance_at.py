"""The balance of an account at a point in time (the ledger's ``balance`` RPC, behind
GET /v1/accounts/{id}/balance?at=), read from its entries' ``balance_after`` on the real
database."""
from datetime import timedelta

import eventlet
import pytest
from nameko.testing.services import worker_factory
from sqlalchemy import text

from services.ledger.service import LedgerService
from shared.db import DatabaseAccess
from shared.errors import NotFound, ValidationFailed
from shared.ids import parse_rfc3339, rfc3339
from tests.support.ledger import (  # noqa: F401 - fixtures
    deposit, entries_of, new_id, open_account, posting, service, withdrawal,
)
from tests.support.ledger_locks import PausedDatabase, is_lock


def moment(engine):
    """The database's clock now (what the ledger stamps entries with)."""
    with engine.connect() as connection:
        return connection.execute(text("SELECT clock_timestamp()")).scalar_one()


def at(value):
    return rfc3339(value)


def test_without_a_moment_it_is_the_balance_now(service, engine):
    account = open_account(service)
    service.post([deposit(account, 700)])
    before = moment(engine)
    answer = service.balance(account)
    assert set(answer) == {"account_id", "currency", "balance", "as_of"}
    assert (answer["account_id"], answer["currency"], answer["balance"]) == (account, "USD", 700)
    assert parse_rfc3339(answer["as_of"]) >= before


def test_at_each_entry_and_between_them_it_is_the_balance_that_entry_left(service, engine):
    alice, bob = open_account(service), open_account(service)
    opened = moment(engine)
    service.post([deposit(alice, 1_000)])
    service.post([posting(alice, bob, 300)])
    service.post([withdrawal(alice, 200)])
    lines = entries_of(engine, alice)
    assert [line.balance_after for line in lines] == [1_000, 700, 500]
    for line in lines:
        answer = service.balance(alice, at(line.created_at))
        assert answer["balance"] == line.balance_after
        assert answer["as_of"] == at(line.created_at)
        just_before = service.balance(alice, at(line.created_at - timedelta(microseconds=1)))
        assert just_before["balance"] == line.balance_after - line.amount
    assert service.balance(alice, at(opened))["balance"] == 0
    assert service.balance(bob, at(lines[1].created_at))["balance"] == 300


def test_before_the_account_was_opened_it_is_zero(service):
    account = open_account(service)
    service.post([deposit(account, 50)])
    answer = service.balance(account, "2001-02-03T04:05:06+01:00")
    assert answer == {"account_id": account, "currency": "USD", "balance": 0,
                      "as_of": "2001-02-03T03:05:06.000000Z"}


def test_a_moment_still_to_come_is_answered_as_of_now(service, engine):
    account = open_account(service)
    service.post([deposit(account, 80)])
    later = moment(engine) + timedelta(days=365)
    answer = service.balance(account, at(later))
    assert answer["balance"] == 80
    assert parse_rfc3339(answer["as_of"]) < later


@pytest.mark.parametrize("given", [
    "yesterday", "2026-11-30T12:00:00", "2026-11-30 12:00:00Z", "2026-02-30T00:00:00Z",
    "2026-11-30T25:00:00Z", "", 1764504000, ["2026-11-30T12:00:00Z"],
])
def test_a_moment_that_is_not_rfc_3339_is_refused(service, given):
    account = open_account(service)
    with pytest.raises(ValidationFailed) as refused:
        service.balance(account, given)
    assert "at" in refused.value.errors


def test_another_owners_account_is_not_found_like_an_unknown_one(service):
    account = open_account(service)
    with pytest.raises(NotFound):
        service.balance(account, owner_id=new_id())
    with pytest.raises(NotFound):
        service.balance(new_id())
    with pytest.raises(NotFound):
        service.balance("not-an-id")
    owner = service.get_account(account)["owner_id"]
    assert service.balance(account, owner_id=owner)["balance"] == 0


def test_an_entry_is_stamped_when_its_posting_holds_the_account_not_when_it_began(engine):
    # A posting that waited for the account's lock is later in the account's history than
    # the one it waited for: its entries' time is read under the lock, so the balance at
    # a moment never counts a posting that had not yet taken its place.
    service = worker_factory(LedgerService, db=DatabaseAccess(engine, "ledger"))
    account = open_account(service)
    paused = PausedDatabase(engine, after=is_lock)
    posting_ = eventlet.spawn(worker_factory(LedgerService, db=paused).post,
                              [deposit(account, 40)])
    paused.wait_until_paused()  # its transaction began, and it holds the account's lock
    held = moment(engine)
    paused.resume()
    [result] = posting_.wait()
    assert parse_rfc3339(result["posted_at"]) > held
    assert service.balance(account, at(held))["balance"] == 0


@pytest.mark.parametrize("given, moment", [
    ("2026-11-30T12:00:00Z", "2026-11-30T12:00:00.000000Z"),
    ("2026-11-30t12:00:00.1234567+02:00", "2026-11-30T10:00:00.123456Z"),
    ("2026-11-30T12:00:00-05:30", "2026-11-30T17:30:00.000000Z"),
    ("2016-12-31T23:59:60Z", "2016-12-31T23:59:59.999999Z"),  # a leap second
    ("0000-01-01T00:00:00Z", "0001-01-01T00:00:00.000000Z"),  # before any datetime
    ("9999-12-31T23:59:59-01:00", "9999-12-31T23:59:59.999999Z"),  # after any
])
def test_every_rfc_3339_date_time_names_a_moment(given, moment):
    # Whatever a client (or a fuzzer reading the document's date-time) sends is answered.
    assert rfc3339(parse_rfc3339(given)) == moment
