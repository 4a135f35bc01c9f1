"""Accounts: who owns which account, in which currency, in what state, with what limits.

Balances are not here: the ledger keeps them, and the gateway joins the two.
Every RPC returns plain JSON-able dicts and raises ``shared.errors`` types.
"""

from services.accounts import records
from shared.cursors import DEFAULT_PAGE_SIZE, page_request
from shared.db import Database
from shared.errors import Conflict, NotFound, ValidationFailed
from shared.ids import parse_id
from shared.money import CURRENCIES, MAX_AMOUNT_MINOR
from shared.service import ServiceBase, rpc

MAX_NAME_LENGTH = 100
MAX_GET_MANY = 1000
# Optimistic updates without an expected version re-read and retry this often before giving up.
MAX_ATTEMPTS = 5


def _invalid(field, message):
    return ValidationFailed("{}: {}".format(field, message), errors={field: [message]})


def _not_found():
    # Says nothing about whether the account exists for someone else.
    return NotFound("account not found")


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _expected_version(value):
    if value is not None and not (_is_int(value) and value >= 1):
        raise _invalid("expected_version", "must be a positive integer")
    return value


class AccountsService(ServiceBase):
    name = "accounts"
    db = Database(schema="accounts")

    @rpc
    def create(self, owner_id, currency, name=None):
        owner = parse_id(owner_id)
        if owner is None:
            raise _invalid("owner_id", "must be a user id")
        if currency not in CURRENCIES:
            raise _invalid("currency", "must be one of {}".format(", ".join(CURRENCIES)))
        if name is not None and not (
            isinstance(name, str) and 1 <= len(name) <= MAX_NAME_LENGTH
        ):
            raise _invalid("name", "must be 1 to {} characters".format(MAX_NAME_LENGTH))
        with self.db.transaction() as connection:
            return records.view(records.insert_account(connection, owner, currency, name))

    @rpc
    def list(self, owner_id, limit=DEFAULT_PAGE_SIZE, cursor=None):
        owner = parse_id(owner_id)
        if owner is None:
            raise _invalid("owner_id", "must be a user id")
        limit, after = page_request(limit, cursor, records.decode_cursor)
        with self.db.connection() as connection:
            rows, more = records.page_of_owner(connection, owner, limit, after)
        return {
            "items": [records.view(row) for row in rows],
            "next_cursor": records.encode_cursor(rows[-1]) if more else None,
        }

    @rpc
    def get(self, account_id, owner_id=None):
        """The account; NotFound when it does not exist, or is not ``owner_id``'s when given."""
        account = parse_id(account_id)
        if account is None:
            raise _not_found()
        with self.db.connection() as connection:
            row = records.find(connection, account)
        if row is None or (owner_id is not None and row.owner_id != parse_id(owner_id)):
            raise _not_found()
        return records.view(row)

    @rpc
    def get_many(self, account_ids):
        """Views of those of ``account_ids`` that exist, in the order asked, each once."""
        if not isinstance(account_ids, (list, tuple)) or len(account_ids) > MAX_GET_MANY:
            raise _invalid("account_ids", "must be a list of at most {} ids".format(MAX_GET_MANY))
        wanted = list(dict.fromkeys(
            parsed for parsed in map(parse_id, account_ids) if parsed is not None
        ))
        with self.db.connection() as connection:
            rows = {row.id: row for row in records.find_many(connection, wanted)}
        return [records.view(rows[account]) for account in wanted if account in rows]

    @rpc
    def set_status(self, account_id, status, expected_version=None):
        """Freeze (``"frozen"``) or unfreeze (``"active"``); the caller has checked the role."""
        if status not in records.SETTABLE_STATUSES:
            raise _invalid("status", "must be one of {}".format(
                ", ".join(records.SETTABLE_STATUSES)))
        return self._change(
            account_id, _expected_version(expected_version),
            lambda row: {} if row.status == status else {"status": status},
        )

    @rpc
    def set_overdraft_limit(self, account_id, overdraft_limit, expected_version=None):
        if not (_is_int(overdraft_limit) and 0 <= overdraft_limit <= MAX_AMOUNT_MINOR):
            raise _invalid("overdraft_limit", "must be an integer from 0 to {}".format(
                MAX_AMOUNT_MINOR))
        return self._change(
            account_id, _expected_version(expected_version),
            lambda row: (
                {} if row.overdraft_limit == overdraft_limit
                else {"overdraft_limit": overdraft_limit}
            ),
        )

    def _change(self, account_id, expected_version, changes_of):
        """Apply ``changes_of(row)`` under optimistic locking; no changes: the row unchanged.

        With ``expected_version`` the caller's view must be current, else version_conflict.
        Without it a lost race is re-read and retried, a few times, before version_conflict.
        """
        account = parse_id(account_id)
        if account is None:
            raise _not_found()
        for _ in range(MAX_ATTEMPTS):
            with self.db.transaction() as connection:
                row = records.find(connection, account)
                if row is None:
                    raise _not_found()
                if row.status == "closed":
                    raise Conflict("the account is closed", code="account_closed")
                if expected_version is not None and row.version != expected_version:
                    raise Conflict("the account has changed (version {}, expected {})".format(
                        row.version, expected_version), code="version_conflict")
                changes = changes_of(row)
                if not changes:
                    return records.view(row)
                updated = records.update_if_version(connection, row.id, row.version, **changes)
                if updated is not None:
                    return records.view(updated)
            if expected_version is not None:
                break
        raise Conflict("the account changed concurrently; read it again",
                       code="version_conflict")
