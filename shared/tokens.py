"""Access tokens: short-lived JWTs signed by auth with Ed25519 (EdDSA), verified anywhere
with the public key alone.

Verification pins the algorithm, the issuer and the audience and requires every
claim it relies on, so ``alg: none``, an HMAC token signed with the public key
(algorithm confusion), a token for another audience or an expired one all fail.
"""
import time
import uuid
from collections import OrderedDict
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from shared.errors import Unauthorized
from shared.settings import load
from shared.shared_settings import SharedSettings

ALGORITHM = "EdDSA"
ISSUER = "paysys-auth"
AUDIENCE = "paysys-api"
REQUIRED_CLAIMS = ["exp", "iat", "iss", "aud", "sub", "jti"]
CLOCK_LEEWAY_S = 5


def key_files(config):
    """``(private_key_path, public_key_path)`` of ``config`` (config.yml as a dict): the
    auth service's private key, everyone's public key."""
    return private_key_file(config), load(SharedSettings, config).public_key_path


def private_key_file(config):
    from services.auth.settings import AuthSettings

    keys_path = load(SharedSettings, config).supervisor.keys_path
    return load(AuthSettings, config).auth.private_key_path(keys_path)


def ensure_keypair(config):
    """Create the signing key pair if it does not exist yet. True if created."""
    private_path, public_path = key_files(config)
    if private_path.exists() and public_path.exists():
        return False
    private_key = Ed25519PrivateKey.generate()
    private_path.parent.mkdir(parents=True, exist_ok=True)
    public_path.parent.mkdir(parents=True, exist_ok=True)
    private_path.write_bytes(private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    private_path.chmod(0o600)
    public_path.write_bytes(private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return True


def load_private_key(config):
    return serialization.load_pem_private_key(private_key_file(config).read_bytes(),
                                              password=None)


def load_public_key(config):
    return serialization.load_pem_public_key(
        load(SharedSettings, config).public_key_path.read_bytes())


def issue_access_token(private_key, user_id, roles, ttl_s, now_s=None):
    now_s = int(now_s if now_s is not None else time.time())
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": str(user_id),
        "roles": list(roles),
        "iat": now_s,
        "exp": now_s + int(ttl_s),
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, private_key, algorithm=ALGORITHM)


def verify_access_token(public_key, token):
    """The token's claims, or ``Unauthorized``."""
    try:
        return jwt.decode(
            token,
            public_key,
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            issuer=ISSUER,
            leeway=CLOCK_LEEWAY_S,
            options={"require": REQUIRED_CLAIMS},
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("The access token has expired.", code="token_expired")
    except jwt.PyJWTError:
        raise Unauthorized("The access token is not valid.", code="invalid_token")


class VerifiedTokens:
    """``verify_access_token``, remembered: a token verified once (its Ed25519 signature,
    issuer, audience) is the same token the next time, so only its expiry is checked again.
    A client sends the same token for its every request until it expires: verifying it
    once per process instead of once per request takes the signature check off the
    request path. Bounded: the least recently used are forgotten."""

    def __init__(self, public_key, size=10_000, clock=time.time):
        self.public_key = public_key
        self.size = size
        self.clock = clock
        self.known = OrderedDict()

    def claims(self, token):
        """The token's claims, or ``Unauthorized``."""
        claims = self.known.get(token)
        if claims is None:
            claims = verify_access_token(self.public_key, token)
            self.known[token] = claims
            if len(self.known) > self.size:
                self.known.popitem(last=False)
        else:
            self.known.move_to_end(token)
        if claims["exp"] + CLOCK_LEEWAY_S < self.clock():
            self.known.pop(token, None)
            raise Unauthorized("The access token has expired.", code="token_expired")
        return claims
