"""The books' integrity over HTTP, through the whole running system: an account's balance
at a point in time, the audit trail of freezes, users and webhooks, and the hash chain in
the reconciliation report (docs/integrity.md)."""
import uuid
from datetime import datetime, timedelta

import pytest

from tests.support.api import assert_problem, new_session

pytestmark = pytest.mark.system


def move(user, path, body):
    response = user.post(path, json=body, headers={"Idempotency-Key": str(uuid.uuid4())})
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "completed", response.text
    return response.json()


def balance_at(user, account_id, at=None):
    params = {} if at is None else {"at": at}
    return user.get("/v1/accounts/{}/balance".format(account_id), params=params)


def moment_before(rfc3339):
    """One microsecond before an RFC 3339 UTC time of the API."""
    parsed = datetime.fromisoformat(rfc3339.replace("Z", "+00:00"))
    return (parsed - timedelta(microseconds=1)).isoformat()


# --- the balance at a point in time --------------------------------------------------------


def test_the_balance_at_each_point_of_an_accounts_history(alice, bob, admin, system):
    mine, theirs = alice.open_account(), bob.open_account()
    move(alice, "/v1/deposits", {"account_id": mine["id"], "amount": 9_000, "currency": "USD"})
    move(alice, "/v1/transfers", {"source_account_id": mine["id"],
                                  "destination_account_id": theirs["id"], "amount": 2_500,
                                  "currency": "USD"})
    entries = alice.get("/v1/accounts/{}/entries".format(mine["id"])).json()["items"]
    assert [entry["balance_after"] for entry in entries] == [6_500, 9_000]  # newest first

    now = balance_at(alice, mine["id"])
    assert now.status_code == 200, now.text
    assert now.json()["balance"] == 6_500 and now.json()["currency"] == "USD"
    auditor = new_session(system, role="auditor")
    for user in (alice, admin, auditor):
        for entry in entries:
            answer = balance_at(user, mine["id"], entry["created_at"]).json()
            assert answer == {"account_id": mine["id"], "currency": "USD",
                              "balance": entry["balance_after"], "as_of": entry["created_at"]}
    first = entries[-1]["created_at"]
    assert balance_at(alice, mine["id"], moment_before(first)).json()["balance"] == 0
    # Before the account existed: no entry yet, so 0 (docs/integrity.md).
    assert balance_at(alice, mine["id"], "2000-01-01T00:00:00+02:00").json() == {
        "account_id": mine["id"], "currency": "USD", "balance": 0,
        "as_of": "1999-12-31T22:00:00.000000Z"}


def test_another_users_balance_is_404_like_an_unknown_account(alice, mallory):
    account = alice.open_account()
    at = "2026-01-01T00:00:00Z"
    for params in ({}, {"at": at}):
        theirs = assert_problem(mallory.get("/v1/accounts/{}/balance".format(account["id"]),
                                            params=params), 404, "not_found")
        unknown = assert_problem(mallory.get("/v1/accounts/{}/balance".format(uuid.uuid4()),
                                             params=params), 404, "not_found")
        assert theirs == unknown


@pytest.mark.parametrize("at", ["yesterday", "2026-11-30T12:00:00", "2026-11-30",
                                "2026-13-01T00:00:00Z", "1764504000", ""])
def test_a_moment_that_is_not_rfc_3339_is_422(alice, at):
    account = alice.open_account()
    problem = assert_problem(balance_at(alice, account["id"], at), 422, "validation_error")
    assert "at" in problem["errors"]


# --- the audit trail ------------------------------------------------------------------------


def audit_events(user, **params):
    response = user.get("/v1/audit-events", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def test_freezes_and_webhook_changes_are_in_the_audit_trail_with_their_request(
        system, alice, admin):
    account = alice.open_account()
    frozen = admin.post("/v1/accounts/{}/freeze".format(account["id"]),
                        headers={"X-Request-ID": "freeze-" + uuid.uuid4().hex})
    assert frozen.status_code == 200, frozen.text
    hook = alice.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/hook",
                                            "events": ["transaction.completed"]})
    assert hook.status_code == 201, hook.text
    gone = alice.request("DELETE", "/v1/webhooks/" + hook.json()["id"])
    assert gone.status_code == 204

    auditor = new_session(system, role="auditor")
    [freeze] = audit_events(auditor, target_id=account["id"])["items"]
    assert (freeze["service"], freeze["actor_type"], freeze["actor_id"], freeze["action"],
            freeze["target_type"]) == ("ledger", "user", admin.id, "account.frozen", "account")
    assert freeze["request_id"] == frozen.headers["X-Request-ID"]
    assert freeze["details"]["status"] == "frozen"
    changes = audit_events(admin, target_id=hook.json()["id"])["items"]
    assert [(item["action"], item["actor_id"], item["request_id"]) for item in changes] == [
        ("webhook.deleted", alice.id, gone.headers["X-Request-ID"]),
        ("webhook.created", alice.id, hook.headers["X-Request-ID"])]
    assert hook.json()["secret"] not in str(changes)


def test_users_and_roles_made_at_the_command_line_are_in_the_audit_trail(system, admin):
    auditor = new_session(system, role="auditor")
    made = audit_events(auditor, target_id=auditor.id)["items"]
    assert [(item["service"], item["actor_type"], item["action"]) for item in made] == [
        ("auth", "cli", "user.created")]
    assert made[0]["details"]["roles"] == ["customer", "auditor"]
    assert made[0]["request_id"]


def test_the_trail_pages_newest_first(system, alice, admin):
    accounts = [alice.open_account()["id"] for _ in range(3)]
    for account in accounts:
        assert admin.post("/v1/accounts/{}/freeze".format(account)).status_code == 200
    seen, cursor = [], None
    while True:
        params = {"limit": 1, "actor_id": admin.id, "action": "account.frozen"}
        if cursor:
            params["cursor"] = cursor
        page = audit_events(admin, **params)
        assert len(page["items"]) <= 1
        seen += [item["target_id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen[:3] == list(reversed(accounts))


def test_only_admins_and_auditors_read_the_trail(alice):
    assert_problem(alice.get("/v1/audit-events"), 403, "forbidden")


@pytest.mark.parametrize("params, field", [
    ({"cursor": "not-a-cursor"}, "cursor"), ({"limit": 0}, "limit"),
    ({"action": "account.deleted"}, "action"), ({"since": "2026"}, "since"),
])
def test_a_malformed_trail_request_is_422(admin, params, field):
    problem = assert_problem(admin.get("/v1/audit-events", params=params), 422,
                             "validation_error")
    assert field in problem["errors"]


# --- the hash chain --------------------------------------------------------------------------


def test_the_reconciliation_report_verifies_the_hash_chain(system, alice):
    account = alice.open_account()
    move(alice, "/v1/deposits", {"account_id": account["id"], "amount": 100,
                                 "currency": "USD"})
    auditor = new_session(system, role="auditor")
    response = auditor.get("/v1/ledger/reconciliation")
    assert response.status_code == 200, response.text
    chain = response.json()["chain"]
    assert chain["valid"] is True and chain["first_broken"] is None
    assert chain["postings_checked"] == sum(head["seq"] for head in chain["heads"]) >= 1
    assert chain["entries_checked"] == 2 * chain["postings_checked"]
