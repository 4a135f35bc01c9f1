"""The users table and what may be done to it."""
import uuid

from sqlalchemy import ARRAY, Column, DateTime, MetaData, Table, Text, func, insert, select, update
from sqlalchemy.dialects.postgresql import UUID

from services.auth.passwords import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH, hash_password
from shared import audit

ROLES = ("customer", "merchant", "admin", "auditor")
MAX_EMAIL_LENGTH = 254
MAX_FULL_NAME_LENGTH = 200
EMAIL_UNIQUE_CONSTRAINT = "users_email_key"  # PostgreSQL's name for auth_0001's unique=True

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


def parse_user_id(user_id):
    """The canonical form of a user id, or None if it is not a UUID (so it is never sent
    to PostgreSQL, where it would be an error rather than "no such user")."""
    try:
        return str(uuid.UUID(user_id))
    except (TypeError, ValueError, AttributeError):
        return None


def ordered_roles(roles):
    return sorted(roles, key=ROLES.index)


def public_view(row):
    """What a user may see of a user: never the password hash."""
    return {
        "id": row.id,
        "email": row.email,
        "full_name": row.full_name,
        "roles": ordered_roles(row.roles),
    }


def _storable(text):
    # PostgreSQL text cannot hold NUL: such input is invalid, never a database error.
    return isinstance(text, str) and "\x00" not in text


def registration_errors(email, password, full_name):
    """Field errors of a registration, ``{field: [message]}`` (empty if none); the same limits
    as the gateway's schema, checked again here because RPC callers are not only the gateway."""
    errors = {}
    if not _storable(email) or not _looks_like_email(normalize_email(email)):
        errors["email"] = ["Not a valid e-mail address."]
    if not isinstance(password, str) or len(password) < MIN_PASSWORD_LENGTH:
        errors["password"] = ["Must be at least {} characters.".format(MIN_PASSWORD_LENGTH)]
    elif len(password) > MAX_PASSWORD_LENGTH:
        errors["password"] = ["Must be at most {} characters.".format(MAX_PASSWORD_LENGTH)]
    if not _storable(full_name) or not 1 <= len(full_name) <= MAX_FULL_NAME_LENGTH:
        errors["full_name"] = ["Must be 1 to {} characters.".format(MAX_FULL_NAME_LENGTH)]
    return errors


def _looks_like_email(email):
    local, at, domain = email.rpartition("@")
    return bool(at and local and domain) and len(email) <= MAX_EMAIL_LENGTH and " " not in email


def find_by_email(connection, email):
    if not _storable(email):
        return None  # no stored address contains NUL
    return connection.execute(
        select(users).where(users.c.email == normalize_email(email))
    ).one_or_none()


def find_by_id(connection, user_id):
    user_id = parse_user_id(user_id)
    if user_id is None:
        return None
    return connection.execute(select(users).where(users.c.id == user_id)).one_or_none()


def insert_user(connection, email, password_hash, full_name, roles=("customer",)):
    """Raises IntegrityError on the unique e-mail constraint if the address is taken."""
    return connection.execute(
        insert(users)
        .values(
            id=str(uuid.uuid4()),
            email=normalize_email(email),
            full_name=full_name,
            password_hash=password_hash,
            roles=list(roles),
        )
        .returning(users)
    ).one()


def is_email_taken_error(error):
    """True if an IntegrityError is the unique violation of the e-mail column."""
    diag = getattr(getattr(error, "orig", None), "diag", None)
    return getattr(diag, "constraint_name", None) == EMAIL_UNIQUE_CONSTRAINT


def replace_password_hash(connection, user_id, old_hash, new_hash):
    # Compare-and-set: a password changed meanwhile must not be overwritten by a rehash.
    connection.execute(
        update(users)
        .where(users.c.id == user_id, users.c.password_hash == old_hash)
        .values(password_hash=new_hash)
    )


def create_or_grant(connection, email, password, full_name, role, actor):
    """Create the user with ``role`` (and ``customer``), or add ``role`` to an existing one,
    recording it in the audit trail as done by ``actor`` (shared.audit.Actor), in the
    caller's transaction. A user who has the role already is left as it was, unrecorded.

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
        audit.record(connection, audit.table_of("auth"), actor, audit.ROLE_GRANTED, "user",
                     row.id, {"email": row.email, "role": role,
                              "roles": ordered_roles(row.roles)})
        return row, False
    if len(password or "") < MIN_PASSWORD_LENGTH:
        raise ValueError("password must be at least {} characters".format(MIN_PASSWORD_LENGTH))
    roles = ["customer"] if role == "customer" else ["customer", role]
    row = insert_user(connection, email, hash_password(password), full_name or email, roles)
    audit.record(connection, audit.table_of("auth"), actor, audit.USER_CREATED, "user", row.id,
                 {"email": row.email, "roles": ordered_roles(row.roles)})
    return row, True
