"""The auth service's registration and users against the real PostgreSQL of the
``database_url`` fixture: one user per e-mail address in any case, even when two register
at once, what a registration refuses, the public view of a user; health, and a token issuer
that refuses to start without its signing key."""
import uuid
from unittest.mock import Mock

import eventlet
import pytest
from sqlalchemy import text

from shared.errors import Conflict, NotFound, ValidationFailed
from tests.support.auth import (  # noqa: F401 - fixtures
    PASSWORD,
    brake,
    config,
    error_of,
    issuer,
    new_email,
    outcome,
    register,
    scalar,
    service,
    token_issuer,
    wait_for_lock_waiters,
)


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
    assert service.health(deep=True)["schema_version"] == "auth_0004"


def test_the_token_issuer_refuses_to_start_without_a_signing_key(config, tmp_path):
    config["auth"]["private_key_file"] = str(tmp_path / "missing.pem")
    container = Mock(config=config)
    provider = token_issuer(container)
    with pytest.raises(RuntimeError, match="missing.pem"):
        provider.setup()
