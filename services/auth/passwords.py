"""Password hashing with Argon2id at OWASP's recommended parameters, set explicitly.

Argon2 costs tens of milliseconds of CPU by design. Each call runs in an OS thread
(``eventlet.tpool``; argon2-cffi releases the GIL) so a login neither stalls the eventlet
hub, which also drives AMQP heartbeats and every other worker, nor waits for the logins ahead
of it. Outside eventlet (the ``paysys`` CLI) tpool simply runs the call in a thread.
"""
import secrets

import shared  # noqa: F401,I001 - silences eventlet's deprecation notice (the CLI imports this)
from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError
from eventlet import tpool

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024  # the gateway's limit too: bounds the work one request can ask for

# OWASP Password Storage Cheat Sheet: Argon2id, m=19 MiB, t=2, p=1.
_hasher = PasswordHasher(
    time_cost=2, memory_cost=19 * 1024, parallelism=1, hash_len=32, salt_len=16, type=Type.ID
)
_dummy_hash = None


def hash_password(password):
    return tpool.execute(_hasher.hash, password)


def _verify(password_hash, password):
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def verify_password(password_hash, password):
    return tpool.execute(_verify, password_hash, password)


def verify_against_dummy(password):
    """Spend what ``verify_password`` spends, for an e-mail address that has no user, so the
    answer time does not tell which addresses are registered. Always False."""
    global _dummy_hash
    if _dummy_hash is None:
        _dummy_hash = _hasher.hash(secrets.token_urlsafe(16))
    verify_password(_dummy_hash, password)
    return False


def needs_rehash(password_hash):
    """True if the hash was made with other parameters than today's (e.g. weaker ones)."""
    try:
        return _hasher.check_needs_rehash(password_hash)
    except (InvalidHashError, ValueError):
        return True
