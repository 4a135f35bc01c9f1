"""The Auth part of the HTTP contract, through the real gateway and auth service."""
import base64
import hashlib
import hmac
import json
import time
from concurrent.futures import ThreadPoolExecutor

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from harness.sandbox import random_client_ip
from tests.support.api import (
    PASSWORD, assert_problem, login, new_session, register, unique_email)

pytestmark = pytest.mark.system


def test_register_answers_the_user_without_any_secret(system):
    email = unique_email()
    response = system.post("/v1/auth/register", json={
        "email": email, "password": PASSWORD, "full_name": "Ada Lovelace"})
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {"id", "email", "full_name", "roles"}
    assert (body["email"], body["full_name"], body["roles"]) == (email, "Ada Lovelace",
                                                                 ["customer"])


def test_an_email_registers_once_whatever_its_case(system):
    email = unique_email()
    register(system, email)
    response = system.post("/v1/auth/register", json={
        "email": email.upper(), "password": PASSWORD, "full_name": "Again"})
    assert_problem(response, 409, "email_taken")


@pytest.mark.parametrize("body,field", [
    ({"email": "a@example.test", "password": "short", "full_name": "A"}, "password"),
    ({"email": "not-an-email", "password": PASSWORD, "full_name": "A"}, "email"),
    ({"password": PASSWORD, "full_name": "A"}, "email"),
    ({"email": "a@example.test", "password": PASSWORD, "full_name": "A", "roles": ["admin"]},
     "roles"),
])
def test_register_refuses_a_bad_body_field_by_field(system, body, field):
    problem = assert_problem(system.post("/v1/auth/register", json=body), 422, "validation_error")
    assert field in problem["errors"]


def test_roles_cannot_be_self_assigned(system):
    email = unique_email()
    system.post("/v1/auth/register", json={"email": email, "password": PASSWORD,
                                            "full_name": "A", "roles": ["admin"]})
    # Nothing was created: the same address registers normally, as a customer.
    assert register(system, email)["roles"] == ["customer"]


def test_login_gives_a_bearer_pair(system):
    email = unique_email()
    register(system, email)
    tokens = login(system, email)
    assert tokens["token_type"] == "Bearer"
    assert tokens["expires_in"] == 900
    assert tokens["access_token"].count(".") == 2
    assert tokens["refresh_token"] and tokens["refresh_token"] != tokens["access_token"]


def test_a_wrong_password_and_an_unknown_email_look_the_same(system):
    email = unique_email()
    register(system, email)
    wrong = assert_problem(system.post("/v1/auth/login", json={
        "email": email, "password": "wrong password!"}), 401)
    unknown = assert_problem(system.post("/v1/auth/login", json={
        "email": unique_email(), "password": PASSWORD}), 401)
    assert wrong == unknown


def test_a_failed_login_challenges_for_a_bearer_token(system):
    response = system.post("/v1/auth/login", json={"email": unique_email(),
                                                   "password": "wrong password!"})
    assert_problem(response, 401, "invalid_credentials")
    # RFC 6750: no token was sent, so no error attribute; the realm names the API.
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="paysys"'


def test_bad_passwords_from_one_ip_get_429_with_a_growing_retry_after_but_not_elsewhere(
        system):
    email = unique_email()
    register(system, email)
    attacker, owner = random_client_ip(), random_client_ip()

    def attempt(password, client_ip=attacker):
        return system.post("/v1/auth/login", json={"email": email, "password": password},
                           headers={"X-Forwarded-For": client_ip})

    for _ in range(5):
        assert_problem(attempt("wrong password!"), 401, "invalid_credentials")
    waits = []
    for _ in range(3):
        limited = attempt("wrong password!")
        assert_problem(limited, 429, "rate_limited")
        waits.append(int(limited.headers["Retry-After"]))
        time.sleep(waits[-1] + 0.2)
        assert_problem(attempt("wrong password!"), 401, "invalid_credentials")
    assert waits == [1, 2, 4]
    # The run gets nowhere, even with the right password, while it waits...
    assert_problem(attempt(PASSWORD), 429, "rate_limited")
    # ...and the owner, from another address, logs in at once.
    response = attempt(PASSWORD, client_ip=owner)
    assert response.status_code == 200, response.text
    assert response.json()["token_type"] == "Bearer"


def test_me_is_the_caller(system):
    session = new_session(system)
    response = session.get("/v1/users/me")
    assert response.status_code == 200
    assert response.json() == {"id": session.id, "email": session.email,
                               "full_name": "Test User", "roles": ["customer"]}


def test_me_without_a_token_is_401_with_a_bearer_challenge(system):
    response = system.get("/v1/users/me")
    assert_problem(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


# --- Token attacks ------------------------------------------------------------------


def _claims(session, **overrides):
    now = int(time.time())
    claims = {"iss": "paysys-auth", "aud": "paysys-api", "sub": session.id,
              "roles": ["customer", "admin"], "iat": now, "exp": now + 600, "jti": "x"}
    claims.update(overrides)
    return claims


def _system_key(system):
    return serialization.load_pem_private_key(
        (system.keys_dir / "jwt-ed25519.pem").read_bytes(), password=None)


def _unsigned(claims):
    def part(value):
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()
    return "{}.{}.".format(part({"alg": "none", "typ": "JWT"}), part(claims))


def _attacks(system, session):
    public_pem = (system.keys_dir / "jwt-ed25519.pub.pem").read_bytes()
    now = int(time.time())
    return {
        "forged signature": jwt.encode(_claims(session), Ed25519PrivateKey.generate(),
                                       algorithm="EdDSA"),
        "alg none": _unsigned(_claims(session)),
        # Algorithm confusion: HMAC keyed with the public key a verifier might hand it
        # (built by hand: PyJWT itself refuses to HMAC-sign with a PEM key).
        "hs256 with the public key": _hs256(_claims(session), public_pem),
        "expired": jwt.encode(_claims(session, iat=now - 1200, exp=now - 600),
                              _system_key(system), algorithm="EdDSA"),
        "wrong audience": jwt.encode(_claims(session, aud="another-api"), _system_key(system),
                                     algorithm="EdDSA"),
        "wrong issuer": jwt.encode(_claims(session, iss="someone-else"), _system_key(system),
                                   algorithm="EdDSA"),
        "garbage": "not.a.token",
    }


def _hs256(claims, key_bytes):
    def part(value):
        return base64.urlsafe_b64encode(value).rstrip(b"=").decode()
    signing_input = "{}.{}".format(part(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()),
                                   part(json.dumps(claims).encode()))
    signature = hmac.new(key_bytes, signing_input.encode(), hashlib.sha256).digest()
    return "{}.{}".format(signing_input, part(signature))


@pytest.mark.parametrize("attack", ["forged signature", "alg none", "hs256 with the public key",
                                    "expired", "wrong audience", "wrong issuer", "garbage"])
def test_a_token_that_is_not_ours_or_no_longer_good_is_refused(system, attack):
    session = new_session(system)
    token = _attacks(system, session)[attack]
    response = system.get("/v1/users/me", headers={"Authorization": "Bearer " + token})
    body = assert_problem(response, 401)
    assert body["code"] == ("token_expired" if attack == "expired" else "invalid_token")
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


def test_a_token_signed_with_the_system_key_is_accepted(system):
    # The control for the attacks above: the same construction with every claim right works.
    session = new_session(system)
    token = jwt.encode(_claims(session, roles=["customer"]), _system_key(system),
                       algorithm="EdDSA")
    response = system.get("/v1/users/me", headers={"Authorization": "Bearer " + token})
    assert response.status_code == 200, response.text


# --- Refresh tokens ---------------------------------------------------------------


def _refresh(system, refresh_token):
    return system.post("/v1/auth/refresh", json={"refresh_token": refresh_token})


def test_refresh_rotates_the_pair_and_the_new_access_token_works(system):
    session = new_session(system)
    response = _refresh(system, session.tokens["refresh_token"])
    assert response.status_code == 200, response.text
    pair = response.json()
    assert pair["refresh_token"] != session.tokens["refresh_token"]
    me = system.get("/v1/users/me", headers={"Authorization": "Bearer " + pair["access_token"]})
    assert me.status_code == 200


def test_a_spent_refresh_token_is_refused_and_revokes_its_whole_family(system):
    session = new_session(system)
    first = session.tokens["refresh_token"]
    second = _refresh(system, first).json()["refresh_token"]
    assert_problem(_refresh(system, first), 401, "refresh_token_reused")
    # The thief or the owner, whoever held `second`, is logged out too.
    assert_problem(_refresh(system, second), 401)


def test_of_two_concurrent_refreshes_with_one_token_exactly_one_wins(system):
    session = new_session(system)
    token = session.tokens["refresh_token"]
    with ThreadPoolExecutor(max_workers=2) as pool:
        statuses = sorted(pool.map(lambda _: _refresh(system, token).status_code, range(2)))
    assert statuses == [200, 401]


def test_logout_revokes_the_family(system):
    session = new_session(system)
    response = session.post("/v1/auth/logout",
                            json={"refresh_token": session.tokens["refresh_token"]})
    assert response.status_code == 204
    assert_problem(_refresh(system, session.tokens["refresh_token"]), 401)


def test_logout_needs_the_access_token(system):
    session = new_session(system)
    response = system.post("/v1/auth/logout",
                           json={"refresh_token": session.tokens["refresh_token"]})
    assert_problem(response, 401)
    assert _refresh(system, session.tokens["refresh_token"]).status_code == 200


def test_one_cannot_log_someone_else_out(system):
    victim, attacker = new_session(system), new_session(system)
    response = attacker.post("/v1/auth/logout",
                             json={"refresh_token": victim.tokens["refresh_token"]})
    assert response.status_code == 204  # says nothing
    assert _refresh(system, victim.tokens["refresh_token"]).status_code == 200


# --- Roles from the command line -------------------------------------------------------


def test_create_user_on_the_command_line_makes_an_admin(system):
    admin = new_session(system, role="admin")
    assert admin.get("/v1/users/me").json()["roles"] == ["customer", "admin"]


def test_create_user_adds_a_role_to_an_existing_user_at_their_next_refresh(system):
    session = new_session(system)
    system.paysys("create-user", "--email", session.email, "--role", "auditor")
    pair = _refresh(system, session.tokens["refresh_token"]).json()
    me = system.get("/v1/users/me", headers={"Authorization": "Bearer " + pair["access_token"]})
    assert me.json()["roles"] == ["customer", "auditor"]
