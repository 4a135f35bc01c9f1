"""The ledger's balance read against a real, migrated PostgreSQL database."""
import uuid

import pytest
from nameko.testing.services import worker_factory
from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError

from services.ledger.balances import balances
from services.ledger.service import LedgerService
from shared.db import DatabaseAccess
from shared.errors import ValidationFailed


@pytest.fixture
def service(engine):
    return worker_factory(LedgerService, db=DatabaseAccess(engine, "ledger"))


def new_id():
    return str(uuid.uuid4())


def test_accounts_the_ledger_has_not_seen_have_zero_balances(service):
    first, second = new_id(), new_id()
    assert service.balances([first, second]) == {
        first: {"balance": 0, "held": 0},
        second: {"balance": 0, "held": 0},
    }


def test_balances_come_from_the_rows(service, engine):
    rich, overdrawn, unseen = new_id(), new_id(), new_id()
    with engine.begin() as connection:
        # Negative only within its overdraft limit (the constraint balance_within_overdraft).
        connection.execute(insert(balances), [
            {"account_id": rich, "currency": "USD", "balance": 12_345, "held": 45,
             "overdraft_limit": 0},
            {"account_id": overdrawn, "currency": "JPY", "balance": -700, "held": 0,
             "overdraft_limit": 700},
        ])
    assert service.balances([rich, overdrawn, unseen]) == {
        rich: {"balance": 12_345, "held": 45},
        overdrawn: {"balance": -700, "held": 0},
        unseen: {"balance": 0, "held": 0},
    }
    assert service.balances([rich.upper()]) == {rich.upper(): {"balance": 12_345, "held": 45}}


def test_a_large_balance_survives_as_an_integer(service, engine):
    account = new_id()
    with engine.begin() as connection:
        connection.execute(insert(balances).values(
            account_id=account, currency="USD", balance=10**15, held=10**15 - 1))
    result = service.balances([account])[account]
    assert result == {"balance": 10**15, "held": 10**15 - 1}
    assert all(type(value) is int for value in result.values())


def test_malformed_ids_get_zeros_and_never_an_error(service):
    assert service.balances(["not-a-uuid", "", "1' OR '1'='1"]) == {
        "not-a-uuid": {"balance": 0, "held": 0},
        "": {"balance": 0, "held": 0},
        "1' OR '1'='1": {"balance": 0, "held": 0},
    }
    assert service.balances([None, 5]) == {}
    assert service.balances([]) == {}


def test_what_is_not_a_list_is_refused(service):
    with pytest.raises(ValidationFailed):
        service.balances("abc")


def test_held_money_cannot_be_negative(engine):
    with pytest.raises(IntegrityError) as raised, engine.begin() as connection:
        connection.execute(insert(balances).values(
            account_id=new_id(), currency="USD", balance=0, held=-1))
    assert "held_not_negative" in str(raised.value)


def test_a_new_row_starts_at_zero(engine, service):
    account = new_id()
    with engine.begin() as connection:
        connection.execute(insert(balances).values(account_id=account, currency="EUR"))
    assert service.balances([account]) == {account: {"balance": 0, "held": 0}}
