"""The audit trail: append-only records of who did what to what, when, under which request.

Each service keeps the records of the actions it performs in its own schema
(``<schema>.audit_events``: auth for users and roles, ledger for freezes, notifications for
webhooks), written by the action's own database transaction, so a record exists exactly
when its action committed. The database refuses UPDATE, DELETE and TRUNCATE on them
(shared/audit_schema.py). GET /v1/audit-events merges the services' pages newest first
(``merge_pages``).

Record: ``{id, occurred_at, service, actor_type: "user" | "cli" | "service", actor_id,
action, target_type, target_id, details, request_id}``.
"""
import uuid
from dataclasses import dataclass
from typing import Optional

from sqlalchemy import (
    Column, DateTime, MetaData, Table, Text, func, insert, literal, select, tuple_,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID

from shared import cursors
from shared.errors import ValidationFailed
from shared.ids import parse_rfc3339, rfc3339
from shared.service import rpc

USER, CLI, SERVICE = "user", "cli", "service"
ACTOR_TYPES = (USER, CLI, SERVICE)

# Every action recorded, by the service that performs it.
ACCOUNT_FROZEN, ACCOUNT_UNFROZEN = "account.frozen", "account.unfrozen"
USER_CREATED, ROLE_GRANTED = "user.created", "user.role_granted"
WEBHOOK_CREATED, WEBHOOK_DELETED = "webhook.created", "webhook.deleted"
ACTIONS = (ACCOUNT_FROZEN, ACCOUNT_UNFROZEN, USER_CREATED, ROLE_GRANTED, WEBHOOK_CREATED,
           WEBHOOK_DELETED)
# The services that keep a trail, for the gateway to merge.
SERVICES = ("auth", "ledger", "notifications")

MAX_FILTER_LENGTH = 200


@dataclass(frozen=True)
class Actor:
    """Who acts: a user (by id, under an HTTP request), an operator at the command line
    (by login name), or a service acting for nobody named (an RPC caller that gave none)."""

    type: str
    id: str
    request_id: Optional[str] = None

    @classmethod
    def of(cls, actor_id, request_id=None):
        """The actor an RPC names (``actor_id``, the caller's user id), or the service's
        own when the caller named none."""
        if isinstance(actor_id, str) and actor_id:
            return cls(USER, actor_id[:MAX_FILTER_LENGTH], _request_id(request_id))
        return cls(SERVICE, "unnamed", _request_id(request_id))


def _request_id(value):
    return value[:128] if isinstance(value, str) and value else None


def audit_table(schema):
    """The ``audit_events`` table of ``schema`` (shared/audit_schema.py creates it)."""
    return Table(
        "audit_events",
        MetaData(schema=schema),
        Column("id", UUID(as_uuid=False), primary_key=True),
        Column("occurred_at", DateTime(timezone=True), nullable=False,
               server_default=func.clock_timestamp()),
        Column("actor_type", Text, nullable=False),
        Column("actor_id", Text, nullable=False),
        Column("action", Text, nullable=False),
        Column("target_type", Text, nullable=False),
        Column("target_id", Text, nullable=False),
        Column("details", JSONB, nullable=False),
        Column("request_id", Text, nullable=True),
    )


def record(connection, table, actor, action, target_type, target_id, details=None):
    """Append one record, in the caller's transaction: it commits or rolls back with the
    action it records."""
    connection.execute(insert(table).values(
        id=str(uuid.uuid4()), actor_type=actor.type, actor_id=actor.id, action=action,
        target_type=target_type, target_id=str(target_id), details=details or {},
        request_id=actor.request_id))


def view(row, service):
    return {
        "id": row.id,
        "occurred_at": rfc3339(row.occurred_at),
        "service": service,
        "actor_type": row.actor_type,
        "actor_id": row.actor_id,
        "action": row.action,
        "target_type": row.target_type,
        "target_id": row.target_id,
        "details": row.details,
        "request_id": row.request_id,
    }


def page(connection, table, limit, before=None, action=None, actor_id=None, target_id=None):
    """Up to ``limit`` records, newest first, strictly before the position ``before`` =
    ``(occurred_at, id)``, matching the filters given; and whether more follow."""
    query = select(table)
    if before is not None:
        occurred_at, record_id = before
        query = query.where(
            tuple_(table.c.occurred_at, table.c.id)
            < tuple_(literal(occurred_at, DateTime(timezone=True)),
                     literal(record_id, UUID(as_uuid=False))))
    for column, value in (("action", action), ("actor_id", actor_id),
                          ("target_id", target_id)):
        if value is not None:
            query = query.where(table.c[column] == value)
    rows = connection.execute(
        query.order_by(table.c.occurred_at.desc(), table.c.id.desc()).limit(limit + 1)).all()
    return rows[:limit], len(rows) > limit


def encode_cursor(item):
    return cursors.encode_time_and_id(parse_rfc3339(item["occurred_at"]), item["id"])


decode_cursor = cursors.decode_time_and_id


def _sort_key(item):
    # occurred_at is always the same RFC 3339 shape (UTC, microseconds), so as text it
    # sorts as time; ids as lowercase text sort as PostgreSQL sorts uuids.
    return item["occurred_at"], item["id"]


def merge_pages(pages, limit):
    """One page of ``limit`` records, newest first, from the services' pages — each one
    the newest ``limit`` before the same cursor, so the newest ``limit`` of them all are
    the page — and the cursor after its last record, if any service has more."""
    items = sorted((item for page_ in pages for item in page_["items"]), key=_sort_key,
                   reverse=True)
    more = len(items) > limit or any(page_["next_cursor"] for page_ in pages)
    items = items[:limit]
    return {"items": items,
            "next_cursor": encode_cursor(items[-1]) if more and items else None}


_TABLES = {schema: audit_table(schema) for schema in SERVICES}


def table_of(schema):
    return _TABLES[schema]


def _filter(name, value):
    if value is None or (isinstance(value, str) and 1 <= len(value) <= MAX_FILTER_LENGTH):
        return value
    message = "must be a string of 1 to {} characters".format(MAX_FILTER_LENGTH)
    raise ValidationFailed("{}: {}".format(name, message), errors={name: [message]})


class AuditRpcs:
    """Mixed into the services that keep a trail (Nameko collects inherited entrypoints):
    their ``audit_events`` RPC, over their own schema's table."""

    @rpc
    def audit_events(self, limit=cursors.DEFAULT_PAGE_SIZE, cursor=None, action=None,
                     actor_id=None, target_id=None):
        """``{items, next_cursor}``: this service's records, newest first, those matching
        every filter given. Who may read them is the caller's business (the gateway lets
        admins and auditors)."""
        limit, before = cursors.page_request(limit, cursor, decode_cursor)
        filters = {name: _filter(name, value) for name, value in (
            ("action", action), ("actor_id", actor_id), ("target_id", target_id))}
        table = table_of(self.name)
        with self.db.connection() as connection:
            rows, more = page(connection, table, limit, before, **filters)
        items = [view(row, self.name) for row in rows]
        return {"items": items, "next_cursor": encode_cursor(items[-1]) if more else None}
