"""The ledger's account RPCs: open, read, list, freeze and unfreeze accounts, and the
snapshot transactions judge money movements on.

Every RPC returns plain JSON-able dicts (an account as the contract shows it, its money
included) and raises ``shared.errors`` types. Ownership is checked here: another
owner's account is a NotFound, exactly like one that does not exist.
"""
from sqlalchemy import text

from services.ledger import accounts as account_records
from services.ledger import balances as balance_records
from services.ledger import entries as entry_records
from shared import audit
from shared.cursors import DEFAULT_PAGE_SIZE, page_request
from shared.errors import Conflict, NotFound, ValidationFailed
from shared.ids import parse_id, parse_rfc3339, rfc3339
from shared.money import CURRENCIES
from shared.service import rpc

MAX_NAME_LENGTH = 100
MAX_ACCOUNTS_PER_CALL = 1000


def invalid(field, message):
    return ValidationFailed("{}: {}".format(field, message), errors={field: [message]})


def not_found():
    # Says nothing about whether the account exists for someone else.
    return NotFound("account not found")


def _visible_account(connection, account_id, owner_id):
    """``(id, row)`` of the account, when it exists and, with ``owner_id`` given, is
    theirs; NotFound otherwise (the same answer either way)."""
    account = parse_id(account_id)
    row = None if account is None else account_records.find(connection, account)
    if row is None or (owner_id is not None and row.owner_id != parse_id(owner_id)):
        raise not_found()
    return account, row


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _expected_version(value):
    if value is not None and not (_is_int(value) and value >= 1):
        raise invalid("expected_version", "must be a positive integer")
    return value


def _ids(account_ids):
    if not isinstance(account_ids, (list, tuple)) or len(account_ids) > MAX_ACCOUNTS_PER_CALL:
        raise invalid("account_ids", "must be a list of at most {} ids".format(
            MAX_ACCOUNTS_PER_CALL))
    return list(dict.fromkeys(parsed for parsed in map(parse_id, account_ids) if parsed))


class AccountRpcs:
    """Mixed into ``LedgerService`` (Nameko collects inherited entrypoints)."""

    @rpc
    def create_account(self, owner_id, currency, name=None):
        owner = parse_id(owner_id)
        if owner is None:
            raise invalid("owner_id", "must be a user id")
        if currency not in CURRENCIES:
            raise invalid("currency", "must be one of {}".format(", ".join(CURRENCIES)))
        if name is not None and not (isinstance(name, str)
                                     and 1 <= len(name) <= MAX_NAME_LENGTH):
            raise invalid("name", "must be 1 to {} characters".format(MAX_NAME_LENGTH))
        with self.db.transaction() as connection:
            return account_records.view(
                account_records.insert_account(connection, owner, currency, name))

    @rpc
    def list_accounts(self, owner_id, limit=DEFAULT_PAGE_SIZE, cursor=None):
        """``{items, next_cursor}``: the owner's accounts, oldest first, with their money."""
        owner = parse_id(owner_id)
        if owner is None:
            raise invalid("owner_id", "must be a user id")
        limit, after = page_request(limit, cursor, account_records.decode_cursor)
        with self.db.connection() as connection:
            rows, more = account_records.page_of_owner(connection, owner, limit, after)
            money = balance_records.balances_of(connection, [row.id for row in rows])
        return {
            "items": [account_records.view(row, money.get(row.id, balance_records.ZERO))
                      for row in rows],
            "next_cursor": account_records.encode_cursor(rows[-1]) if more else None,
        }

    @rpc
    def get_account(self, account_id, owner_id=None):
        """The account with its money; NotFound when it does not exist, or is not
        ``owner_id``'s when given."""
        with self.db.connection() as connection:
            account, row = _visible_account(connection, account_id, owner_id)
            money = balance_records.balances_of(connection, [account])
        return account_records.view(row, money.get(account, balance_records.ZERO))

    @rpc
    def balance(self, account_id, at=None, owner_id=None):
        """``{account_id, currency, balance, as_of}``: the account's posted balance now,
        or at the moment ``at`` (RFC 3339) from its entries' ``balance_after``: that of
        its latest entry made at or before ``at``, 0 if there is none (also before the
        account was opened). ``as_of``: the moment the balance is of, ``at`` or, for a
        moment still to come, now. NotFound when it does not exist, or is not
        ``owner_id``'s when given."""
        moment = None
        if at is not None:
            moment = parse_rfc3339(at)
            if moment is None:
                raise invalid("at", "must be an RFC 3339 date-time with an offset, e.g. "
                                    "2026-11-30T12:00:00Z")
        with self.db.connection() as connection:
            account, row = _visible_account(connection, account_id, owner_id)
            now = connection.execute(text("SELECT clock_timestamp()")).scalar_one()
            if moment is None or moment >= now:
                moment = now
                money = balance_records.balances_of(connection, [account]).get(
                    account, balance_records.ZERO)["balance"]
            else:
                money = entry_records.balance_at(connection, account, moment)
        return {"account_id": account, "currency": row.currency, "balance": money,
                "as_of": rfc3339(moment)}

    @rpc
    def snapshot(self, account_ids):
        """``{account_id: {id, owner_id, currency, status, overdraft_limit, version, balance,
        held}}`` of those of ``account_ids`` that exist, read in one statement: what the
        transactions service checks ownership on and the validators judge."""
        wanted = _ids(account_ids)
        with self.db.connection() as connection:
            return account_records.states(connection, wanted)

    @rpc
    def set_status(self, account_id, status, expected_version=None, actor_id=None,
                   request_id=None):
        """Freeze (``"frozen"``) or unfreeze (``"active"``); the caller has checked the role.
        A change is recorded in the audit trail in its own transaction, as done by
        ``actor_id`` (the admin's user id) under ``request_id`` (the HTTP request's); a
        request that changes nothing records nothing."""
        if status not in account_records.SETTABLE_STATUSES:
            raise invalid("status", "must be one of {}".format(
                ", ".join(account_records.SETTABLE_STATUSES)))
        actor = audit.Actor.of(actor_id, request_id)
        action = (audit.ACCOUNT_FROZEN if status == account_records.FROZEN
                  else audit.ACCOUNT_UNFROZEN)

        def recorded(connection, before, after):
            audit.record(connection, audit.table_of("ledger"), actor, action, "account",
                         after.id, {"owner_id": after.owner_id, "status_before": before.status,
                                    "status": after.status, "version": after.version})

        return self._change(account_id, _expected_version(expected_version),
                            lambda row: {} if row.status == status else {"status": status},
                            on_change=recorded)

    def _change(self, account_id, expected_version, changes_of, on_change=None):
        """Apply ``changes_of(row)`` under the account's lock, bumping its version; no
        changes: the account unchanged. With ``expected_version`` the caller's view must be
        current, else version_conflict. ``on_change(connection, before, after)`` runs in
        the same transaction when something changed."""
        account = parse_id(account_id)
        if account is None:
            raise not_found()
        with self.db.transaction() as connection:
            row = account_records.lock_for_change(connection, account)
            if row is None:
                raise not_found()
            if row.status == account_records.CLOSED:
                raise Conflict("the account is closed", code="account_closed")
            if expected_version is not None and row.version != expected_version:
                raise Conflict("the account has changed (version {}, expected {})".format(
                    row.version, expected_version), code="version_conflict")
            changes = changes_of(row)
            if changes:
                changed = account_records.update_if_version(connection, row.id, row.version,
                                                            **changes)
                if on_change is not None:
                    on_change(connection, row, changed)
                row = changed
            money = balance_records.balances_of(connection, [account])
        return account_records.view(row, money.get(account, balance_records.ZERO))
