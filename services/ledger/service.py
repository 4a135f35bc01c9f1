"""The ledger: accounts and their money — double-entry postings and the balances they keep,
checked under one row lock (batches.py, accounts.py) — the Kafka mirror's relay
(mirror_relay/) and reconciliation (reconciliation.py), with the hash chain that makes its
history tamper-evident (chain.py). The account RPCs are in account_rpcs.py; the audit
trail of freezes is read with ``audit_events`` (shared/audit.py)."""
from nameko.dependency_providers import Config

from paysys_mirror import MirrorUnavailable
from services.ledger import balances as balance_records
from services.ledger import batches
from services.ledger.account_rpcs import AccountRpcs
from services.ledger import entries as entry_records
from services.ledger import holds as hold_records
from services.ledger import reconciliation as ledger_reconciliation
from services.ledger.mirror_relay import MirrorRelay
from shared import faults
from shared.audit import AuditRpcs
from shared.cursors import DEFAULT_PAGE_SIZE, page_request
from shared.db import Database
from shared.errors import ServiceUnavailable, ValidationFailed
from shared.ids import parse_id
from shared.service import ServiceBase, rpc

MAX_BALANCES = 1000
MAX_POSTINGS = 1000


class LedgerService(AccountRpcs, AuditRpcs, ServiceBase):
    name = "ledger"
    db = Database(schema="ledger")
    config = Config()
    relay = MirrorRelay()

    @rpc
    def post(self, postings, atomic=False):
        """Post a batch in one database commit: a result per posting, in the same order.

        Each posting is ``{transaction_id, type, currency, amount, debit_account_id,
        credit_account_id, expected_versions?}`` (a null account is the currency's
        settlement account; ``expected_versions`` maps account ids to the versions the
        posting was approved on). Postings apply in the order given: a later one sees the
        balances the earlier ones left. Its result is ``{transaction_id, status: "posted",
        entries, posted_at}`` or ``{transaction_id, status: "rejected", reason}``, the
        reason one of services/ledger/rules.py (``insufficient_funds``,
        ``currency_mismatch``, ``account_not_found``, ``account_frozen``,
        ``account_changed``, ``malformed_posting``…); a rejected posting moves nothing and
        the others still post — unless ``atomic``: then one rejection rejects every other
        posting with ``batch_aborted`` and nothing moves. A transaction posted before
        answers its first result again and moves nothing (redelivery, retries, races).

        Authorization holds: a posting of type ``payment`` with ``"hold": true`` moves no
        money but holds ``amount`` on the debit account (its ``held``; the same funds check
        as a debit): ``{transaction_id, status: "held", hold: {account_id, amount,
        currency}}``, exactly once per transaction id. A posting of type ``capture`` with
        ``"capture_of": <hold transaction id>`` (debit: the account holding) frees the
        whole hold and moves its ``amount`` (at most the hold's) in one step; rejected
        with ``hold_not_found``, ``hold_not_active`` or ``amount_exceeds_hold``."""
        if not isinstance(postings, (list, tuple)) or len(postings) > MAX_POSTINGS:
            message = "must be a list of at most {} postings".format(MAX_POSTINGS)
            raise ValidationFailed("postings: " + message, errors={"postings": [message]})
        # Test-only (shared/faults.py): refuse, or commit and answer too late to be heard.
        lose_reply_s = faults.posting(self.name) if faults.armed else 0
        results = batches.post(self.db, list(postings), atomic=bool(atomic))
        self.relay.wake()  # committed: the mirror gets it now, not at the next interval
        if lose_reply_s:
            faults.sleep(lose_reply_s)
        return results

    @rpc
    def release_hold(self, transaction_id):
        """Free an authorization hold: ``{transaction_id, status: "released"}``; the hold's
        status (``captured`` or ``released``) if it was settled before, ``unknown`` if there
        is no such hold. Idempotent."""
        transaction = parse_id(transaction_id)
        if transaction is None:
            return {"transaction_id": transaction_id, "status": hold_records.UNKNOWN}
        with self.db.transaction() as connection:
            return hold_records.release(connection, transaction)

    @rpc
    def reconciliation(self):
        """API.md's GET /v1/ledger/reconciliation: ``{balanced, currencies: {CUR:
        {entries_sum, accounts_sum}}, accounts_checked, discrepancies, mirror:
        {ledger_postings, kafka_postings, missing, ...}}`` (reconciliation.py). Waits up
        to ``ledger.reconcile_wait_ms`` for the relay, then reads the whole topic.
        ServiceUnavailable when Kafka does not answer: no report beats a false one."""
        try:
            return ledger_reconciliation.reconcile_with_config(self.db, self.config)
        except MirrorUnavailable as error:
            raise ServiceUnavailable(
                "The Kafka mirror cannot be read: {}".format(error), retry_after_s=5)

    @rpc
    def balances(self, account_ids):
        """``{account_id: {"balance": int, "held": int}}`` with an entry for every requested id
        (keyed as given): zeros for an account no money has moved for yet, or for an id that is
        no UUID (it cannot have money). Items that are not strings are skipped."""
        if not isinstance(account_ids, (list, tuple)) or len(account_ids) > MAX_BALANCES:
            raise ValidationFailed(
                "account_ids: must be a list of at most {} ids".format(MAX_BALANCES),
                errors={"account_ids": ["must be a list of at most {} ids".format(MAX_BALANCES)]},
            )
        requested = {
            given: parse_id(given)
            for given in account_ids if isinstance(given, str)
        }
        with self.db.connection() as connection:
            found = balance_records.balances_of(
                connection, {parsed for parsed in requested.values() if parsed is not None})
        return {
            given: dict(found.get(parsed, balance_records.ZERO))
            for given, parsed in requested.items()
        }

    @rpc
    def entries(self, account_id, limit=DEFAULT_PAGE_SIZE, cursor=None):
        """``{"items", "next_cursor"}``: the account's entries, newest first. Ownership is
        the caller's business (the gateway asks get_account with the owner first)."""
        limit, before = page_request(limit, cursor, entry_records.decode_cursor)
        account = parse_id(account_id)
        if account is None:
            return {"items": [], "next_cursor": None}
        with self.db.connection() as connection:
            rows, more = entry_records.page_of_account(connection, account, limit, before)
        return {
            "items": [entry_records.view(row) for row in rows],
            "next_cursor": entry_records.encode_cursor(rows[-1]) if more else None,
        }
