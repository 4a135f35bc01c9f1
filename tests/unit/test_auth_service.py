"""The auth service's RPCs against the real PostgreSQL of the ``database_url`` fixture.

Workers come from ``worker_factory`` with the real database access and the real token issuer
(set up by its dependency provider from config); nothing of the database is mocked.
"""
import hashlib
import time
import uuid
from unittest.mock import Mock

import eventlet
import pytest
from argon2 import PasswordHasher
from nameko.testing.services import worker_factory
from sqlalchemy import text

from services.auth import passwords, users
from services.auth.dependencies import LoginBrake, TokenIssuer
from services.auth.service import AuthService
from shared.db import DatabaseAccess
from shared.errors import Conflict, NotFound, Unauthorized, ValidationFailed
from shared.tokens import ensure_keypair, load_public_key, verify_access_token

PASSWORD = "correct horse battery"


@pytest.fixture
def config(service_config, tmp_path):
    service_config["auth"]["private_key_file"] = str(tmp_path / "jwt-ed25519.pem")
    service_config["auth"]["public_key_file"] = str(tmp_path / "jwt-ed25519.pub.pem")
    ensure_keypair(service_config)
    return service_config


def token_issuer(container):
    """The provider as a service container binds it (the container is held weakly)."""
    return TokenIssuer().bind(container, "tokens")


@pytest.fixture
def issuer(config):
    container = Mock(config=config)
    provider = token_issuer(container)
    provider.setup()
    return provider.get_dependency(Mock())


@pytest.fixture
def brake(config):
    """The login brake's settings as config.yml gives them."""
    container = Mock(config=config)
    provider = LoginBrake().bind(container, "brake")
    provider.setup()
    return provider.get_dependency(Mock())


@pytest.fixture
def service(engine, issuer, brake):
    return worker_factory(AuthService, db=DatabaseAccess(engine, "auth"), tokens=issuer,
                          brake=brake)


@pytest.fixture
def public_key(config):
    return load_public_key(config)


def new_email():
    return "user-{}@example.com".format(uuid.uuid4().hex)


def register(service, email=None, password=PASSWORD):
    return service.register(email or new_email(), password, "Ada Lovelace")


def error_of(call, *args):
    with pytest.raises(Exception) as raised:
        call(*args)
    return raised.value


def scalar(engine, sql, **params):
    with engine.connect() as connection:
        return connection.execute(text(sql), params).scalar()


def execute(engine, sql, **params):
    with engine.begin() as connection:
        connection.execute(text(sql), params)


def family_of(engine, refresh_token):
    return scalar(engine, "SELECT family_id FROM auth.refresh_tokens WHERE token_hash = :h",
                  h=hashlib.sha256(refresh_token.encode()).hexdigest())


def wait_for_lock_waiters(engine, count, timeout_s=10):
    """Until ``count`` sessions of the test database wait on a lock (so a race is staged)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        waiting = scalar(engine, "SELECT count(*) FROM pg_stat_activity "
                         "WHERE datname = current_database() AND wait_event_type = 'Lock'")
        if waiting >= count:
            return
        eventlet.sleep(0.02)
    raise AssertionError("{} sessions never waited on the lock".format(count))


def outcome(call, *args):
    try:
        return call(*args)
    except Exception as error:  # noqa: BLE001 - the test inspects what was raised
        return error


# --- register -------------------------------------------------------------------------


def test_register_returns_the_user_as_a_customer_with_the_email_normalized(service, engine):
    local = "Mixed.Case-{}".format(uuid.uuid4().hex)
    user = service.register("  {}@Example.COM ".format(local), PASSWORD, "Ada Lovelace")
    assert user == {"id": user["id"], "email": "{}@example.com".format(local.lower()),
                    "full_name": "Ada Lovelace", "roles": ["customer"]}
    assert str(uuid.UUID(user["id"])) == user["id"]
    stored = scalar(engine, "SELECT password_hash FROM auth.users WHERE id = :id", id=user["id"])
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert PASSWORD not in stored


@pytest.mark.parametrize("variant", [str, str.upper, lambda email: "  " + email.title() + "\t"])
def test_registering_a_taken_email_in_any_case_is_a_conflict(service, variant):
    email = new_email()
    register(service, email)
    error = error_of(register, service, variant(email))
    assert isinstance(error, Conflict) and error.code == "email_taken"


def test_two_concurrent_registrations_of_one_email_give_one_user_and_one_conflict(
        service, engine):
    """Both registrations pass any SELECT-first check (the other's row is not committed yet);
    only the unique constraint can turn the loser into a 409 instead of a 500."""
    email = new_email()
    blocker = engine.connect()
    try:
        # An uncommitted row with the address: both registrations will wait on its index entry.
        blocker.execute(text(
            "INSERT INTO auth.users (id, email, full_name, password_hash) "
            "VALUES (:id, :email, 'x', 'x')"), {"id": str(uuid.uuid4()), "email": email})
        racers = [eventlet.spawn(outcome, register, service, email) for _ in range(2)]
        wait_for_lock_waiters(engine, 2)
    finally:
        blocker.rollback()
        blocker.close()
    results = [racer.wait() for racer in racers]
    users_made = [r for r in results if isinstance(r, dict)]
    conflicts = [r for r in results if isinstance(r, Conflict) and r.code == "email_taken"]
    assert (len(users_made), len(conflicts)) == (1, 1), results
    assert scalar(engine, "SELECT count(*) FROM auth.users WHERE email = :e", e=email) == 1


@pytest.mark.parametrize("email, password, full_name, field", [
    ("a@example.com", "short", "Ada", "password"),
    ("a@example.com", "x" * 11, "Ada", "password"),
    ("a@example.com", "x" * 1025, "Ada", "password"),
    ("a@example.com", None, "Ada", "password"),
    ("not-an-email", PASSWORD, "Ada", "email"),
    ("@example.com", PASSWORD, "Ada", "email"),
    (None, PASSWORD, "Ada", "email"),
    ("a@example.com", PASSWORD, "", "full_name"),
    ("a@example.com", PASSWORD, "x" * 201, "full_name"),
])
def test_an_invalid_registration_is_a_validation_error_naming_the_field(
        service, engine, email, password, full_name, field):
    before = scalar(engine, "SELECT count(*) FROM auth.users")
    error = error_of(service.register, email, password, full_name)
    assert isinstance(error, ValidationFailed) and error.code == "validation_error"
    assert list(error.errors) == [field]
    assert scalar(engine, "SELECT count(*) FROM auth.users") == before


def test_a_twelve_character_password_is_enough(service):
    assert register(service, password="x" * 12)["roles"] == ["customer"]


# --- login ----------------------------------------------------------------------------


def test_login_gives_a_bearer_pair_whose_access_token_verifies_with_the_public_key(
        service, engine, config, public_key):
    user = register(service)
    pair = service.login(user["email"].upper(), PASSWORD)
    assert set(pair) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert pair["token_type"] == "Bearer"
    assert pair["expires_in"] == config["auth"]["access_token_ttl_s"]
    claims = verify_access_token(public_key, pair["access_token"])
    assert claims["sub"] == user["id"]
    assert claims["roles"] == ["customer"]
    assert claims["exp"] - claims["iat"] == config["auth"]["access_token_ttl_s"]
    # Only the hash of the refresh token is stored.
    assert family_of(engine, pair["refresh_token"]) is not None
    assert scalar(engine, "SELECT count(*) FROM auth.refresh_tokens WHERE token_hash = :t",
                  t=pair["refresh_token"]) == 0


def test_each_login_starts_its_own_family(service, engine):
    user = register(service)
    first, second = service.login(user["email"], PASSWORD), service.login(user["email"], PASSWORD)
    assert family_of(engine, first["refresh_token"]) != family_of(engine, second["refresh_token"])


def test_a_wrong_password_and_an_unknown_email_get_the_same_answer(service):
    user = register(service)
    wrong = error_of(service.login, user["email"], PASSWORD + "!")
    unknown = error_of(service.login, new_email(), PASSWORD)
    for error in (wrong, unknown):
        assert isinstance(error, Unauthorized)
        assert (error.code, error.detail) == ("invalid_credentials", "Email or password is wrong.")


@pytest.mark.parametrize("email, password", [(None, PASSWORD), ("a@example.com", None),
                                             (123, []), ("", "")])
def test_login_with_values_of_the_wrong_type_is_invalid_credentials(service, email, password):
    error = error_of(service.login, email, password)
    assert isinstance(error, Unauthorized) and error.code == "invalid_credentials"


def test_an_unknown_email_still_costs_one_hash_verification(service, monkeypatch):
    verifications = []
    real_verify = passwords._verify

    def counting_verify(password_hash, password):
        verifications.append(password_hash)
        return real_verify(password_hash, password)

    monkeypatch.setattr(passwords, "_verify", counting_verify)
    user = register(service)
    error_of(service.login, user["email"], "wrong password!")
    error_of(service.login, new_email(), "wrong password!")
    assert len(verifications) == 2
    # The dummy is a hash of today's parameters, so it costs what a real one costs.
    assert verifications[1].startswith("$argon2id$v=19$m=19456,t=2,p=1$")


def test_a_hash_with_outdated_parameters_is_replaced_at_the_next_login(service, engine):
    user = register(service)
    weak = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1).hash(PASSWORD)
    execute(engine, "UPDATE auth.users SET password_hash = :h WHERE id = :id",
            h=weak, id=user["id"])
    service.login(user["email"], PASSWORD)
    rehashed = scalar(engine, "SELECT password_hash FROM auth.users WHERE id = :id", id=user["id"])
    assert rehashed != weak
    assert rehashed.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert not passwords.needs_rehash(rehashed)
    service.login(user["email"], PASSWORD)  # the new hash is of the same password
    assert scalar(engine, "SELECT password_hash FROM auth.users WHERE id = :id",
                  id=user["id"]) == rehashed  # and a current hash is left alone


def test_a_failed_login_does_not_rehash(service, engine):
    user = register(service)
    weak = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1).hash(PASSWORD)
    execute(engine, "UPDATE auth.users SET password_hash = :h WHERE id = :id",
            h=weak, id=user["id"])
    error_of(service.login, user["email"], "not the password")
    assert scalar(engine, "SELECT password_hash FROM auth.users WHERE id = :id",
                  id=user["id"]) == weak


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
        users.create_or_grant(connection, user["email"], None, None, "merchant")
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


# --- get_user, health, the token provider ---------------------------------------------


def test_get_user_returns_the_public_view(service):
    user = register(service)
    assert service.get_user(user["id"]) == user
    assert service.get_user(user["id"].upper()) == user


@pytest.mark.parametrize("user_id", [
    str(uuid.uuid4()), "not-a-uuid", "", None, 42, "'; DROP TABLE auth.users; --"])
def test_get_user_of_an_unknown_or_malformed_id_is_not_found(service, user_id):
    error = error_of(service.get_user, user_id)
    assert isinstance(error, NotFound) and error.code == "not_found"


def test_health_answers_and_deep_health_reads_the_newest_revision(service):
    assert service.health() == {"service": "auth", "status": "ok"}
    assert service.health(deep=True)["schema_version"] == "auth_0003"


def test_the_token_issuer_refuses_to_start_without_a_signing_key(config, tmp_path):
    config["auth"]["private_key_file"] = str(tmp_path / "missing.pem")
    container = Mock(config=config)
    provider = token_issuer(container)
    with pytest.raises(RuntimeError, match="missing.pem"):
        provider.setup()
