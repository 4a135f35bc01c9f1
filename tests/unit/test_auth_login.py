"""The auth service's login against real PostgreSQL: a bearer pair whose access token
verifies with the public key, a family of its own per login, one answer (at one cost) for a
wrong password and an unknown e-mail, and a hash with outdated parameters replaced at the
next good login."""
import pytest
from argon2 import PasswordHasher

from services.auth import passwords
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
    new_email,
    public_key,
    register,
    scalar,
    service,
)


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
