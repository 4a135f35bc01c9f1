"""The auth service's refresh tokens against real PostgreSQL: each refresh rotates the
token within its family and keeps the login's expiry, a reused token kills the whole family,
two refreshes racing with one token have one winner, and logout revokes its own family
only."""
import hashlib
import uuid

import eventlet
import pytest
from sqlalchemy import text

from services.auth import users
from shared.audit import CLI, Actor
from shared.errors import Unauthorized
from shared.tokens import verify_access_token
from tests.support.auth import (  # noqa: F401 - fixtures
    PASSWORD,
    brake,
    config,
    error_of,
    execute,
    family_of,
    issuer,
    outcome,
    public_key,
    register,
    scalar,
    service,
    wait_for_lock_waiters,
)


# --- refresh --------------------------------------------------------------------------


def test_refresh_rotates_and_a_reused_token_kills_the_whole_family(service, engine, public_key):
    user = register(service)
    first = service.login(user["email"], PASSWORD)
    second = service.refresh(first["refresh_token"])
    assert second["refresh_token"] != first["refresh_token"]
    assert second["token_type"] == "Bearer"
    assert verify_access_token(public_key, second["access_token"])["sub"] == user["id"]
    family = family_of(engine, first["refresh_token"])
    assert family_of(engine, second["refresh_token"]) == family

    reused = error_of(service.refresh, first["refresh_token"])
    assert isinstance(reused, Unauthorized) and reused.code == "refresh_token_reused"
    # The newest token, never used, is dead too: the thief may hold it.
    newest = error_of(service.refresh, second["refresh_token"])
    assert isinstance(newest, Unauthorized) and newest.code == "invalid_refresh_token"
    assert scalar(engine, "SELECT revoked_reason FROM auth.refresh_families WHERE id = :f",
                  f=family) == "reused"
    # Presented again, the spent token is still a reuse; other logins are untouched.
    again = error_of(service.refresh, first["refresh_token"])
    assert isinstance(again, Unauthorized) and again.code == "refresh_token_reused"
    assert service.refresh(service.login(user["email"], PASSWORD)["refresh_token"])


def test_a_chain_of_refreshes_keeps_working_and_keeps_the_login_expiry(service, engine):
    user = register(service)
    pair = service.login(user["email"], PASSWORD)
    family = family_of(engine, pair["refresh_token"])
    expires_at = scalar(engine, "SELECT expires_at FROM auth.refresh_families WHERE id = :f",
                        f=family)
    lifetime_s = scalar(engine, "SELECT extract(epoch FROM expires_at - created_at) "
                        "FROM auth.refresh_families WHERE id = :f", f=family)
    assert int(lifetime_s) == service.tokens.refresh_token_ttl_s
    for _ in range(3):
        pair = service.refresh(pair["refresh_token"])
    assert family_of(engine, pair["refresh_token"]) == family
    assert scalar(engine, "SELECT expires_at FROM auth.refresh_families WHERE id = :f",
                  f=family) == expires_at


def test_the_refreshed_access_token_carries_the_current_roles(service, engine, public_key):
    user = register(service)
    pair = service.login(user["email"], PASSWORD)
    with engine.begin() as connection:  # what `paysys create-user --role merchant` does
        users.create_or_grant(connection, user["email"], None, None, "merchant",
                              Actor(CLI, "operator", "cli-request"))
    refreshed = service.refresh(pair["refresh_token"])
    assert verify_access_token(public_key, refreshed["access_token"])["roles"] == [
        "customer", "merchant"]


@pytest.mark.parametrize("token", [
    "never-issued-" + uuid.uuid4().hex, "", None, 42, ["x"], "x" * 10_000])
def test_an_unknown_or_malformed_refresh_token_is_invalid(service, token):
    error = error_of(service.refresh, token)
    assert isinstance(error, Unauthorized) and error.code == "invalid_refresh_token"


def test_a_token_of_an_expired_family_is_invalid(service, engine):
    user = register(service)
    pair = service.login(user["email"], PASSWORD)
    execute(engine, "UPDATE auth.refresh_families SET expires_at = now() - interval '1 second' "
            "WHERE id = :f", f=family_of(engine, pair["refresh_token"]))
    error = error_of(service.refresh, pair["refresh_token"])
    assert isinstance(error, Unauthorized) and error.code == "invalid_refresh_token"


def test_two_concurrent_refreshes_with_one_token_have_exactly_one_winner(service, engine):
    """Both refreshes are made to start while a third session holds the token's row lock;
    a read-then-update implementation would let both see it unspent and both win."""
    user = register(service)
    pair = service.login(user["email"], PASSWORD)
    blocker = engine.connect()
    try:
        blocker.execute(text("SELECT 1 FROM auth.refresh_tokens WHERE token_hash = :h FOR UPDATE"),
                        {"h": hashlib.sha256(pair["refresh_token"].encode()).hexdigest()})
        racers = [eventlet.spawn(outcome, service.refresh, pair["refresh_token"])
                  for _ in range(2)]
        wait_for_lock_waiters(engine, 2)
    finally:
        blocker.rollback()
        blocker.close()
    results = [racer.wait() for racer in racers]
    winners = [r for r in results if isinstance(r, dict)]
    losers = [r for r in results if isinstance(r, Unauthorized)]
    assert (len(winners), len(losers)) == (1, 1), results
    assert losers[0].code == "refresh_token_reused"
    assert scalar(engine, "SELECT count(*) FROM auth.refresh_tokens WHERE family_id = :f",
                  f=family_of(engine, pair["refresh_token"])) == 2  # one successor, not two
    # The loser presented a spent token: by the reuse rule the winner's new token dies too.
    error = error_of(service.refresh, winners[0]["refresh_token"])
    assert isinstance(error, Unauthorized) and error.code == "invalid_refresh_token"


# --- logout ---------------------------------------------------------------------------


def test_logout_revokes_the_family_and_only_that_family(service, engine):
    user = register(service)
    phone = service.login(user["email"], PASSWORD)
    laptop = service.login(user["email"], PASSWORD)
    rotated = service.refresh(phone["refresh_token"])
    # Any token of the family, even the spent one, logs that family out.
    assert service.logout(user["id"], phone["refresh_token"]) is None
    error = error_of(service.refresh, rotated["refresh_token"])
    assert isinstance(error, Unauthorized) and error.code == "invalid_refresh_token"
    assert scalar(engine, "SELECT revoked_reason FROM auth.refresh_families WHERE id = :f",
                  f=family_of(engine, phone["refresh_token"])) == "logout"
    assert service.refresh(laptop["refresh_token"])
    assert service.logout(user["id"], rotated["refresh_token"]) is None  # twice: still fine


def test_logout_with_someone_elses_token_changes_nothing(service, engine):
    owner, other = register(service), register(service)
    pair = service.login(owner["email"], PASSWORD)
    assert service.logout(other["id"], pair["refresh_token"]) is None
    assert scalar(engine, "SELECT revoked_at FROM auth.refresh_families WHERE id = :f",
                  f=family_of(engine, pair["refresh_token"])) is None
    assert service.refresh(pair["refresh_token"])


@pytest.mark.parametrize("user_id, token", [
    (None, None), ("not-a-uuid", "whatever"), (str(uuid.uuid4()), "never-issued"),
    (str(uuid.uuid4()), ""), (42, 42), (str(uuid.uuid4()), "x" * 10_000)])
def test_logout_with_anything_unknown_is_a_silent_no_op(service, user_id, token):
    assert service.logout(user_id, token) is None
