"""Refresh tokens: opaque, stored only as SHA-256 hashes, rotated on every use.

One login starts a family; each refresh spends the presented token and adds its successor to
the same family. A spent token presented again means two parties hold copies of the chain (one
of them, likely, a thief), and we cannot tell which is the owner: the whole family is revoked,
the newest token included, and the owner logs in again.

A family's expiry is absolute, login + ``refresh_token_ttl_s``: rotation never extends it, so a
stolen chain cannot be kept alive indefinitely by refreshing it before each token expires.
Revocation and expiry live on the family row, so one check covers every token of it, including
one issued by a refresh that raced with the revocation.
"""
import datetime
import hashlib
import secrets
import uuid
from collections import namedtuple

from sqlalchemy import Column, DateTime, ForeignKey, Table, Text, func, insert, select, update
from sqlalchemy.dialects.postgresql import UUID

from services.auth.users import metadata

TOKEN_BYTES = 32
MAX_TOKEN_LENGTH = 512  # the gateway's limit; anything longer is not ours
REVOKED_REUSED = "reused"
REVOKED_LOGOUT = "logout"

refresh_families = Table(
    "refresh_families",
    metadata,
    Column("id", UUID(as_uuid=False), primary_key=True),
    Column("user_id", UUID(as_uuid=False), ForeignKey("users.id"), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True)),
    Column("revoked_reason", Text),
)
refresh_tokens = Table(
    "refresh_tokens",
    metadata,
    Column("token_hash", Text, primary_key=True),
    Column("family_id", UUID(as_uuid=False), ForeignKey("refresh_families.id"), nullable=False),
    Column("issued_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("spent_at", DateTime(timezone=True)),
)

Spent = namedtuple("Spent", "family_id user_id")


def token_hash(token):
    """The stored form of a token, or None for something that cannot be one of ours."""
    if not isinstance(token, str) or not 0 < len(token) <= MAX_TOKEN_LENGTH:
        return None
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def start_family(connection, user_id, ttl_s):
    family_id = str(uuid.uuid4())
    connection.execute(insert(refresh_families).values(
        id=family_id,
        user_id=user_id,
        # The database's clock, as every comparison with expires_at uses it.
        expires_at=func.now() + datetime.timedelta(seconds=int(ttl_s)),
    ))
    return family_id


def add_token(connection, family_id):
    """A new token of the family; only its hash is stored."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    connection.execute(insert(refresh_tokens).values(
        token_hash=token_hash(token), family_id=family_id))
    return token


def spend(connection, token):
    """Spend ``token`` if it is live: ``Spent(family_id, user_id)``, else None.

    One statement, so of two concurrent refreshes with the same token exactly one wins:
    the second waits for the first's row lock, then finds ``spent_at`` set and matches nothing.
    """
    hashed = token_hash(token)
    if hashed is None:
        return None
    row = connection.execute(
        update(refresh_tokens)
        .where(
            refresh_tokens.c.token_hash == hashed,
            refresh_tokens.c.spent_at.is_(None),
            refresh_tokens.c.family_id == refresh_families.c.id,
            refresh_families.c.revoked_at.is_(None),
            refresh_families.c.expires_at > func.now(),
        )
        .values(spent_at=func.now())
        .returning(refresh_tokens.c.family_id, refresh_families.c.user_id)
    ).one_or_none()
    return Spent(row.family_id, row.user_id) if row is not None else None


def revoke_if_spent(connection, token):
    """After ``spend`` failed: if ``token`` was spent before, revoke its family and return
    ``Spent(family_id, user_id)`` (reuse detected); otherwise (unknown, expired or revoked) None."""
    hashed = token_hash(token)
    if hashed is None:
        return None
    row = connection.execute(
        select(refresh_tokens.c.family_id, refresh_tokens.c.spent_at, refresh_families.c.user_id)
        .join(refresh_families, refresh_families.c.id == refresh_tokens.c.family_id)
        .where(refresh_tokens.c.token_hash == hashed)
    ).one_or_none()
    if row is None or row.spent_at is None:
        return None
    revoke_family(connection, row.family_id, REVOKED_REUSED)
    return Spent(row.family_id, row.user_id)


def revoke_family(connection, family_id, reason):
    # A family revoked already keeps its first reason: that is the one worth investigating.
    connection.execute(
        update(refresh_families)
        .where(refresh_families.c.id == family_id, refresh_families.c.revoked_at.is_(None))
        .values(revoked_at=func.now(), revoked_reason=reason)
    )


def revoke_for_user(connection, token, user_id):
    """Revoke the family of ``token`` if it is ``user_id``'s; anything else changes nothing.
    True if a live family was revoked."""
    hashed = token_hash(token)
    if hashed is None:
        return False
    family_id = (
        select(refresh_tokens.c.family_id)
        .where(refresh_tokens.c.token_hash == hashed)
        .scalar_subquery()
    )
    result = connection.execute(
        update(refresh_families)
        .where(
            refresh_families.c.id == family_id,
            refresh_families.c.user_id == user_id,
            refresh_families.c.revoked_at.is_(None),
        )
        .values(revoked_at=func.now(), revoked_reason=REVOKED_LOGOUT)
    )
    return result.rowcount == 1
