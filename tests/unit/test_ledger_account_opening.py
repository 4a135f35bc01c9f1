"""Opening accounts in the ledger (services/ledger/account_rpcs.py) against a real,
migrated PostgreSQL database: an account opens active at version one with its balances row
beside it, refuses what no account may be, and answers with its money wherever it is shown;
the settlement account is no account."""
import uuid

import pytest
from nameko.exceptions import deserialize, serialize

from shared.errors import NotFound, ValidationFailed
from shared.money import settlement_account_id
from tests.support.ledger import (  # noqa: F401 - fixtures
    RFC3339_UTC,
    deposit,
    money_row,
    new_id,
    posting,
    service,
    set_overdraft_limit,
    stored,
)


VIEW_KEYS = {"id", "owner_id", "name", "currency", "status", "balance", "available_balance",
             "overdraft_limit", "version", "created_at"}


# --- create ------------------------------------------------------------------------------


@pytest.mark.parametrize("currency", ["JPY", "USD"])
def test_create_opens_an_active_account_at_version_one(service, engine, currency):
    owner = new_id()
    account = service.create_account(owner, currency, name="Savings")
    assert set(account) == VIEW_KEYS
    assert uuid.UUID(account["id"])
    assert account["owner_id"] == owner
    assert account["name"] == "Savings"
    assert account["currency"] == currency
    assert account["status"] == "active"
    assert (account["balance"], account["available_balance"]) == (0, 0)
    assert account["overdraft_limit"] == 0
    assert account["version"] == 1
    assert RFC3339_UTC.match(account["created_at"]), account["created_at"]
    row = stored(engine, account["id"])
    assert (row.owner_id, row.currency, row.status, row.version) == (owner, currency, "active", 1)
    # Its balances row comes with it: the row whose lock guards the account.
    money = money_row(engine, account["id"])
    assert (money.currency, money.balance, money.held, money.is_settlement) == (
        currency, 0, 0, False)


def test_create_without_a_name_stores_none(service):
    assert service.create_account(new_id(), "EUR")["name"] is None


@pytest.mark.parametrize("currency", ["XXX", "usd", "", None, 840, "USDX"])
def test_create_refuses_an_unknown_currency(service, engine, currency):
    owner = new_id()
    with pytest.raises(ValidationFailed) as raised:
        service.create_account(owner, currency)
    assert raised.value.code == "validation_error"
    assert set(raised.value.errors) == {"currency"}
    assert service.list_accounts(owner)["items"] == []


@pytest.mark.parametrize("owner", ["not-a-uuid", None, 7])
def test_create_refuses_a_malformed_owner(service, owner):
    with pytest.raises(ValidationFailed) as raised:
        service.create_account(owner, "USD")
    assert set(raised.value.errors) == {"owner_id"}


@pytest.mark.parametrize("name", ["", "x" * 101, 5])
def test_create_refuses_a_bad_name(service, name):
    with pytest.raises(ValidationFailed) as raised:
        service.create_account(new_id(), "USD", name=name)
    assert set(raised.value.errors) == {"name"}


def test_the_validation_error_crosses_rpc_with_its_field_errors(service):
    with pytest.raises(ValidationFailed) as raised:
        service.create_account(new_id(), "XXX")
    received = deserialize(serialize(raised.value))
    assert type(received) is ValidationFailed
    assert received.errors == raised.value.errors


# --- money ----------------------------------------------------------------------------------


def test_an_account_answers_with_its_money_everywhere(service):
    owner = new_id()
    account = service.create_account(owner, "USD")["id"]
    set_overdraft_limit(service, account, 50)
    service.post([deposit(account, 100)])
    hold = posting(account, service.create_account(new_id(), "USD")["id"], 30,
                   type="payment", hold=True)
    assert service.post([hold])[0]["status"] == "held"
    # What may be spent: balance - held + overdraft limit.
    shown = service.get_account(account)
    assert (shown["balance"], shown["available_balance"], shown["overdraft_limit"],
            shown["version"]) == (100, 120, 50, 2)
    assert service.list_accounts(owner)["items"] == [shown]
    assert service.snapshot([account]) == {account: {
        "id": account, "owner_id": owner, "currency": "USD", "status": "active",
        "overdraft_limit": 50, "version": 2, "balance": 100, "held": 30}}
    frozen = service.set_status(account, "frozen")
    assert (frozen["balance"], frozen["available_balance"]) == (100, 120)


def test_the_settlement_account_is_no_account(service, engine):
    settlement = settlement_account_id("USD")
    service.post([deposit(service.create_account(new_id(), "USD")["id"], 1)])
    with pytest.raises(NotFound):
        service.get_account(settlement)
    with pytest.raises(NotFound):
        service.set_status(settlement, "frozen")
    with pytest.raises(NotFound):
        set_overdraft_limit(service, settlement, 5)
    assert service.snapshot([settlement]) == {}
    assert money_row(engine, settlement).overdraft_limit == 0
