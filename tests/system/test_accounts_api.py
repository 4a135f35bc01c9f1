"""The Accounts part of the HTTP contract, and that nobody sees another's account."""
import uuid

import pytest

from tests.support.api import assert_problem, new_session

pytestmark = pytest.mark.system

ACCOUNT_FIELDS = {"id", "owner_id", "name", "currency", "status", "balance",
                  "available_balance", "overdraft_limit", "version", "created_at"}


def test_open_an_account(alice):
    response = alice.post("/v1/accounts", json={"currency": "JPY", "name": "Travel"})
    assert response.status_code == 201, response.text
    account = response.json()
    assert set(account) == ACCOUNT_FIELDS
    assert account["owner_id"] == alice.id
    assert (account["name"], account["currency"], account["status"]) == ("Travel", "JPY",
                                                                         "active")
    assert (account["balance"], account["available_balance"], account["overdraft_limit"],
            account["version"]) == (0, 0, 0, 1)
    assert response.headers["Location"] == "/v1/accounts/" + account["id"]
    assert alice.get(response.headers["Location"]).json() == account


@pytest.mark.parametrize("body,field", [
    ({"currency": "XXX"}, "currency"),
    ({"currency": "usd"}, "currency"),
    ({}, "currency"),
    ({"currency": "USD", "balance": 1_000_000}, "balance"),
    ({"currency": "USD", "owner_id": str(uuid.uuid4())}, "owner_id"),
    ({"currency": "USD", "status": "active"}, "status"),
    ({"currency": "USD", "name": ""}, "name"),
])
def test_opening_refuses_bad_and_mass_assigned_fields(alice, body, field):
    problem = assert_problem(alice.post("/v1/accounts", json=body), 422, "validation_error")
    assert field in problem["errors"]
    assert alice.get("/v1/accounts").json()["items"] == []


def test_list_shows_only_the_callers_accounts_oldest_first(alice, mallory):
    opened = [alice.open_account("USD"), alice.open_account("EUR")]
    mallory.open_account("USD")
    page = alice.get("/v1/accounts").json()
    assert [account["id"] for account in page["items"]] == [a["id"] for a in opened]
    assert page["next_cursor"] is None


def test_list_pages_with_a_cursor(alice):
    opened = [alice.open_account("USD")["id"] for _ in range(3)]
    first = alice.get("/v1/accounts", params={"limit": 2}).json()
    assert [a["id"] for a in first["items"]] == opened[:2]
    second = alice.get("/v1/accounts", params={"limit": 2, "cursor": first["next_cursor"]}).json()
    assert [a["id"] for a in second["items"]] == opened[2:]
    assert second["next_cursor"] is None


@pytest.mark.parametrize("params,field", [
    ({"limit": 0}, "limit"), ({"limit": 201}, "limit"), ({"limit": "ten"}, "limit"),
    ({"cursor": "not-a-cursor"}, "cursor"), ({"sort": "balance"}, "sort"),
])
def test_list_refuses_bad_query_parameters(alice, params, field):
    problem = assert_problem(alice.get("/v1/accounts", params=params), 422, "validation_error")
    assert field in problem["errors"]


def test_entries_of_a_new_account_are_an_empty_page(alice):
    account = alice.open_account()
    response = alice.get("/v1/accounts/{}/entries".format(account["id"]))
    assert response.status_code == 200
    assert response.json() == {"items": [], "next_cursor": None}


# --- BOLA / IDOR: another's account is a 404, exactly like one that does not exist ------

ACCOUNT_PATHS = ["/v1/accounts/{}", "/v1/accounts/{}/entries"]


@pytest.mark.parametrize("template", ACCOUNT_PATHS)
def test_another_users_account_is_404_like_an_unknown_one(alice, mallory, template):
    account = alice.open_account()
    theirs = assert_problem(mallory.get(template.format(account["id"])), 404, "not_found")
    unknown = assert_problem(mallory.get(template.format(uuid.uuid4())), 404, "not_found")
    assert theirs == unknown
    assert account["id"] not in str(theirs)


@pytest.mark.parametrize("template", ACCOUNT_PATHS)
def test_a_malformed_account_id_is_404(alice, template):
    assert_problem(alice.get(template.format("12345")), 404, "not_found")


@pytest.mark.parametrize("action", ["freeze", "unfreeze"])
def test_freezing_is_for_admins_only(alice, mallory, action):
    account = alice.open_account()
    for user in (alice, mallory):
        assert_problem(user.post("/v1/accounts/{}/{}".format(account["id"], action)), 403,
                       "forbidden")
    assert alice.get("/v1/accounts/" + account["id"]).json()["status"] == "active"


def test_an_admin_freezes_and_unfreezes_and_each_change_bumps_the_version(alice, admin):
    account = alice.open_account()
    frozen = admin.post("/v1/accounts/{}/freeze".format(account["id"]))
    assert frozen.status_code == 200, frozen.text
    assert (frozen.json()["status"], frozen.json()["version"]) == ("frozen", 2)
    assert alice.get("/v1/accounts/" + account["id"]).json()["status"] == "frozen"
    again = admin.post("/v1/accounts/{}/freeze".format(account["id"])).json()
    assert (again["status"], again["version"]) == ("frozen", 2)  # nothing changed
    active = admin.post("/v1/accounts/{}/unfreeze".format(account["id"])).json()
    assert (active["status"], active["version"]) == ("active", 3)


def test_freezing_an_unknown_account_is_404(admin):
    assert_problem(admin.post("/v1/accounts/{}/freeze".format(uuid.uuid4())), 404, "not_found")


def test_freeze_takes_no_body(alice, admin):
    account = alice.open_account()
    response = admin.post("/v1/accounts/{}/freeze".format(account["id"]),
                          json={"status": "closed"})
    assert_problem(response, 422, "validation_error")
    assert alice.get("/v1/accounts/" + account["id"]).json()["status"] == "active"


def test_staff_read_any_account_but_customers_only_their_own(system, alice, admin):
    account = alice.open_account()
    auditor = new_session(system, role="auditor")
    for staff in (admin, auditor):
        assert staff.get("/v1/accounts/" + account["id"]).json()["id"] == account["id"]
    assert_problem(auditor.post("/v1/accounts/{}/freeze".format(account["id"])), 403)
