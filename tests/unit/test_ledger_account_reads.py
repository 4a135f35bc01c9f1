"""Reading the ledger's accounts against a real PostgreSQL: an owner's accounts paged
oldest first (ties broken by id), one account only to its owner and anything else not
found, and a snapshot of those that exist, each once."""
import base64
import uuid

import pytest

from shared.errors import NotFound, ValidationFailed
from tests.support.ledger import (  # noqa: F401 - fixtures
    deposit,
    insert_rows,
    new_id,
    service,
)


# --- list --------------------------------------------------------------------------------


def test_list_pages_through_the_owners_accounts_oldest_first(service):
    owner = new_id()
    created = [service.create_account(owner, "USD", name="a{}".format(i)) for i in range(5)]
    service.create_account(new_id(), "USD")  # someone else's: never listed

    seen, cursor, pages = [], None, 0
    while True:
        page = service.list_accounts(owner, limit=2, cursor=cursor)
        pages += 1
        assert len(page["items"]) <= 2
        seen.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert isinstance(cursor, str)
    assert pages == 3
    assert [a["id"] for a in seen] == [a["id"] for a in created]
    assert seen == created


def test_list_orders_by_creation_time_then_id(service, engine):
    owner = new_id()
    # Same created_at (one transaction): the id breaks the tie, and paging still sees each once.
    with engine.begin() as connection:
        ids = [insert_rows(connection, owner_id=owner, currency="GBP").id for _ in range(4)]
    seen, cursor = [], None
    while True:
        page = service.list_accounts(owner, limit=1, cursor=cursor)
        seen.extend(a["id"] for a in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(ids)


def test_list_with_a_limit_that_fits_exactly_has_no_next_cursor(service):
    owner = new_id()
    for _ in range(3):
        service.create_account(owner, "USD")
    page = service.list_accounts(owner, limit=3)
    assert len(page["items"]) == 3
    assert page["next_cursor"] is None


def test_list_of_an_owner_without_accounts_is_empty(service):
    assert service.list_accounts(new_id()) == {"items": [], "next_cursor": None}


def test_list_defaults_to_fifty(service):
    owner = new_id()
    for _ in range(51):
        service.create_account(owner, "USD")
    page = service.list_accounts(owner)
    assert len(page["items"]) == 50
    assert page["next_cursor"] is not None
    assert len(service.list_accounts(owner, cursor=page["next_cursor"])["items"]) == 1


def _b64(raw):
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize("cursor", [
    "not a cursor!",
    "%%%",
    _b64(b"\xff\xfe"),
    _b64(b"[1, 2]"),
    _b64(b'{"t": "yesterday", "i": "x"}'),
    _b64(b'{"t": "2026-01-01T00:00:00", "i": "' + str(uuid.uuid4()).encode() + b'"}'),
    _b64(b'{"t": "2026-01-01T00:00:00Z", "i": "nope"}'),
    _b64(b'{"t": 5, "i": "nope"}'),
    "x" * 1000,
    7,
])
def test_list_refuses_a_malformed_cursor(service, cursor):
    with pytest.raises(ValidationFailed) as raised:
        service.list_accounts(new_id(), cursor=cursor)
    assert set(raised.value.errors) == {"cursor"}


@pytest.mark.parametrize("limit", [0, 201, -1, True, 2.0, "10", None])
def test_list_refuses_a_limit_outside_1_to_200(service, limit):
    with pytest.raises(ValidationFailed) as raised:
        service.list_accounts(new_id(), limit=limit)
    assert set(raised.value.errors) == {"limit"}


def test_list_accepts_the_extremes_of_the_limit(service):
    assert service.list_accounts(new_id(), limit=1)["items"] == []
    assert service.list_accounts(new_id(), limit=200)["items"] == []


@pytest.mark.parametrize("owner", ["not-a-uuid", None, 7])
def test_list_refuses_a_malformed_owner(service, owner):
    with pytest.raises(ValidationFailed) as raised:
        service.list_accounts(owner)
    assert set(raised.value.errors) == {"owner_id"}


# --- get -----------------------------------------------------------------------------------


def test_get_returns_the_account(service):
    owner = new_id()
    account = service.create_account(owner, "JPY")
    assert service.get_account(account["id"]) == account
    assert service.get_account(account["id"], owner_id=owner) == account
    assert service.get_account(account["id"].upper(), owner_id=owner.upper()) == account


def test_get_of_another_owners_account_is_not_found(service):
    account = service.create_account(new_id(), "USD", name="private")
    with pytest.raises(NotFound) as raised:
        service.get_account(account["id"], owner_id=new_id())
    assert raised.value.code == "not_found"
    assert account["id"] not in str(raised.value) and "private" not in str(raised.value)


@pytest.mark.parametrize("account_id", ["not-a-uuid", "", None, 12, "1; DROP TABLE x", "0" * 5000])
def test_get_of_a_malformed_id_is_not_found(service, account_id):
    with pytest.raises(NotFound) as raised:
        service.get_account(account_id)
    assert raised.value.code == "not_found"


def test_get_of_an_unknown_id_is_not_found(service):
    with pytest.raises(NotFound):
        service.get_account(new_id())
    with pytest.raises(NotFound):
        service.get_account(new_id(), owner_id=new_id())


def test_get_with_a_malformed_owner_is_not_found(service):
    account = service.create_account(new_id(), "USD")
    with pytest.raises(NotFound):
        service.get_account(account["id"], owner_id="someone")


# --- snapshot ------------------------------------------------------------------------------


def test_snapshot_answers_those_that_exist_each_once(service):
    first = service.create_account(new_id(), "USD")
    second = service.create_account(new_id(), "EUR")
    service.post([deposit(second["id"], 700, currency="EUR")])
    found = service.snapshot([second["id"].upper(), new_id(), "junk", None, first["id"],
                              second["id"]])
    assert found == {
        first["id"]: {"id": first["id"], "owner_id": first["owner_id"], "currency": "USD",
                      "status": "active", "overdraft_limit": 0, "version": 1,
                      "balance": 0, "held": 0},
        second["id"]: {"id": second["id"], "owner_id": second["owner_id"], "currency": "EUR",
                       "status": "active", "overdraft_limit": 0, "version": 1,
                       "balance": 700, "held": 0},
    }
    assert service.snapshot([]) == {}


@pytest.mark.parametrize("account_ids", ["abc", None, {"a": 1}, [new_id()] * 1001])
def test_snapshot_refuses_what_is_not_a_list_of_at_most_1000(service, account_ids):
    with pytest.raises(ValidationFailed) as raised:
        service.snapshot(account_ids)
    assert set(raised.value.errors) == {"account_ids"}
