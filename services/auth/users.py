"""The users table and what may be done to it."""
import uuid

from sqlalchemy import ARRAY, Column, DateTime, MetaData, Table, Text, func, insert, select, update
from sqlalchemy.dialects.postgresql import UUID

from services.auth.passwords import MIN_PASSWORD_LENGTH, hash_password

ROLES = ("customer", "merchant", "admin", "auditor")

metadata = MetaData(schema="auth")
users = Table(
    "users",
    metadata,
    Column("id", UUID(as_uuid=False), primary_key=True),
    Column("email", Text, nullable=False, unique=True),
    Column("full_name", Text, nullable=False),
    Column("password_hash", Text, nullable=False),
    Column("roles", ARRAY(Text), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)


def normalize_email(email):
    return email.strip().lower()


def public_view(row):
    """What a user may see of a user: never the password hash."""
    return {
        "id": row.id,
        "email": row.email,
        "full_name": row.full_name,
        "roles": sorted(row.roles, key=ROLES.index),
    }


def find_by_email(connection, email):
    return connection.execute(
        select(users).where(users.c.email == normalize_email(email))
    ).one_or_none()


def insert_user(connection, email, password, full_name, roles=("customer",)):
    row = connection.execute(
        insert(users)
        .values(
            id=str(uuid.uuid4()),
            email=normalize_email(email),
            full_name=full_name,
            password_hash=hash_password(password),
            roles=list(roles),
        )
        .returning(users)
    ).one()
    return row


def create_or_grant(connection, email, password, full_name, role):
    """Create the user with ``role`` (and ``customer``), or add ``role`` to an existing one.

    Returns ``(user_row, created)``. An existing user's password is left as it was.
    """
    if role not in ROLES:
        raise ValueError("unknown role {!r}; one of {}".format(role, ", ".join(ROLES)))
    existing = find_by_email(connection, email)
    if existing is not None:
        if role in existing.roles:
            return existing, False
        row = connection.execute(
            update(users)
            .where(users.c.id == existing.id)
            .values(roles=func.array_append(users.c.roles, role))
            .returning(users)
        ).one()
        return row, False
    if len(password or "") < MIN_PASSWORD_LENGTH:
        raise ValueError("password must be at least {} characters".format(MIN_PASSWORD_LENGTH))
    roles = ["customer"] if role == "customer" else ["customer", role]
    return insert_user(connection, email, password, full_name or email, roles), True
