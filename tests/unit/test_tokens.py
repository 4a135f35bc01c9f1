"""shared/tokens.py against forged, confused and stale access tokens."""
import base64
import hashlib
import hmac
import json
import stat
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from shared import tokens
from shared.config import load_config
from shared.errors import Unauthorized

USER_ID = "0b0d3c52-6f1e-4a39-9b8e-8f7c9a5e1d20"


@pytest.fixture(scope="module")
def private_key():
    return Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def public_key(private_key):
    return private_key.public_key()


def claims(**overrides):
    now_s = int(time.time())
    values = {
        "iss": tokens.ISSUER,
        "aud": tokens.AUDIENCE,
        "sub": USER_ID,
        "roles": ["customer"],
        "iat": now_s,
        "exp": now_s + 900,
        "jti": "a" * 32,
    }
    values.update(overrides)
    return values


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unsigned_parts(header, payload):
    return "{}.{}".format(b64url(json.dumps(header).encode()), b64url(json.dumps(payload).encode()))


def rejected(public_key, token):
    with pytest.raises(Unauthorized) as raised:
        tokens.verify_access_token(public_key, token)
    return raised.value.code


def test_a_token_issued_by_auth_verifies_and_carries_subject_and_roles(private_key, public_key):
    token = tokens.issue_access_token(private_key, USER_ID, ["customer", "merchant"], 900)
    verified = tokens.verify_access_token(public_key, token)
    assert verified["sub"] == USER_ID
    assert verified["roles"] == ["customer", "merchant"]
    assert verified["exp"] - verified["iat"] == 900
    assert jwt.get_unverified_header(token)["alg"] == "EdDSA"


def test_a_token_signed_by_another_ed25519_key_is_rejected(public_key):
    forger = Ed25519PrivateKey.generate()
    token = jwt.encode(claims(), forger, algorithm="EdDSA")
    assert rejected(public_key, token) == "invalid_token"


def test_a_token_whose_payload_was_changed_after_signing_is_rejected(private_key, public_key):
    header, _, signature = jwt.encode(claims(), private_key, algorithm="EdDSA").split(".")
    payload = b64url(json.dumps(claims(roles=["customer", "admin"])).encode())
    assert rejected(public_key, ".".join([header, payload, signature])) == "invalid_token"


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_an_unsigned_alg_none_token_is_rejected(public_key, alg):
    token = unsigned_parts({"alg": alg, "typ": "JWT"}, claims()) + "."
    assert rejected(public_key, token) == "invalid_token"


def test_an_hs256_token_keyed_with_the_public_key_is_rejected(public_key):
    """Algorithm confusion: the attacker knows the public key and uses it as an HMAC secret."""
    for encoding, form in [
        (serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
        (serialization.Encoding.Raw, serialization.PublicFormat.Raw),
    ]:
        secret = public_key.public_bytes(encoding, form)
        signing_input = unsigned_parts({"alg": "HS256", "typ": "JWT"}, claims())
        mac = hmac.new(secret, signing_input.encode("ascii"), hashlib.sha256).digest()
        assert rejected(public_key, signing_input + "." + b64url(mac)) == "invalid_token"


def test_an_expired_token_is_rejected_as_expired(private_key, public_key):
    long_ago_s = int(time.time()) - 3600
    token = tokens.issue_access_token(private_key, USER_ID, ["customer"], 900, now_s=long_ago_s)
    assert rejected(public_key, token) == "token_expired"


def test_a_token_expired_by_more_than_the_leeway_is_rejected(private_key, public_key):
    now_s = int(time.time())
    token = jwt.encode(claims(exp=now_s - tokens.CLOCK_LEEWAY_S - 2), private_key,
                       algorithm="EdDSA")
    assert rejected(public_key, token) == "token_expired"


@pytest.mark.parametrize("claim, value", [
    ("aud", "some-other-api"),
    ("aud", ["some-other-api"]),
    ("iss", "someone-else"),
])
def test_a_token_for_another_audience_or_from_another_issuer_is_rejected(
        private_key, public_key, claim, value):
    token = jwt.encode(claims(**{claim: value}), private_key, algorithm="EdDSA")
    assert rejected(public_key, token) == "invalid_token"


@pytest.mark.parametrize("missing", tokens.REQUIRED_CLAIMS)
def test_a_token_without_a_required_claim_is_rejected(private_key, public_key, missing):
    values = claims()
    del values[missing]
    token = jwt.encode(values, private_key, algorithm="EdDSA")
    assert rejected(public_key, token) == "invalid_token"


@pytest.mark.parametrize("garbage", ["", "abc", "a.b.c", "....", "é.é.é"])
def test_garbage_is_rejected_as_invalid(public_key, garbage):
    assert rejected(public_key, garbage) == "invalid_token"


def test_the_key_pair_is_written_once_private_key_owner_only_and_loads_back(tmp_path):
    config = load_config()
    config["auth"]["private_key_file"] = str(tmp_path / "k" / "jwt.pem")
    config["tokens"]["public_key_file"] = str(tmp_path / "k" / "jwt.pub.pem")
    config["supervisor"]["run_dir"] = str(tmp_path / "run")
    assert tokens.ensure_keypair(config) is True
    private_pem = (tmp_path / "k" / "jwt.pem").read_bytes()
    assert tokens.ensure_keypair(config) is False  # never replaces a key in use
    assert (tmp_path / "k" / "jwt.pem").read_bytes() == private_pem
    assert stat.S_IMODE((tmp_path / "k" / "jwt.pem").stat().st_mode) == 0o600
    token = tokens.issue_access_token(tokens.load_private_key(config), USER_ID, ["admin"], 60)
    assert tokens.verify_access_token(tokens.load_public_key(config), token)["roles"] == ["admin"]


def test_a_remembered_token_is_verified_once_and_still_expires(monkeypatch):
    private_key = Ed25519PrivateKey.generate()
    issued_s = time.time()
    token = tokens.issue_access_token(private_key, "user-1", ["customer"], ttl_s=60,
                                      now_s=issued_s)
    checks = []
    real = tokens.verify_access_token
    monkeypatch.setattr(tokens, "verify_access_token",
                        lambda key, given: checks.append(given) or real(key, given))
    now = [issued_s]
    remembered = tokens.VerifiedTokens(private_key.public_key(), clock=lambda: now[0])
    assert remembered.claims(token)["sub"] == "user-1"
    assert remembered.claims(token)["sub"] == "user-1"
    assert len(checks) == 1  # the signature was checked once
    now[0] = issued_s + 60 + tokens.CLOCK_LEEWAY_S + 1
    with pytest.raises(Unauthorized) as raised:
        remembered.claims(token)
    assert raised.value.code == "token_expired"


def test_a_bad_token_is_refused_every_time_and_never_remembered():
    remembered = tokens.VerifiedTokens(Ed25519PrivateKey.generate().public_key())
    for _ in range(2):
        with pytest.raises(Unauthorized):
            remembered.claims("not.a.token")
    assert len(remembered.known) == 0
