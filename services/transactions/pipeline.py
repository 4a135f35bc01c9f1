"""The consensus protocol of one transaction: preparation, validation, execution.

1. Preparation (``prepare``): the accounts exist and the caller may move
   money out of the source (a stranger's account is a 404); the transaction is
   recorded ``pending``, once per idempotency key. The accounts' ``version`` as
   read here is checked again before posting (optimistic locking): an account
   frozen or changed meanwhile fails the transaction with ``account_changed``.
2. Validation (``decide``): a snapshot of the accounts and their balances goes
   to every validator; a majority of the pool decides; the counted, signed
   votes are stored with the decision.
3. Execution (``execute``): the ledger posts an approved transaction in one
   database commit, exactly once per transaction id; then it is ``completed``.
4. Rollback: a rejection, a missing quorum or a posting the ledger refuses
   marks it ``failed`` with the reason; nothing was moved.
5. Recovery (``recover``): approved but unposted transactions are posted again
   (idempotently), undecided ones are failed after a timeout.

Steps 2 to 4 run on batches (``process_many``): concurrent transactions share
one snapshot, one vote round, one posting and one commit of each kind
(batcher.py decides what goes together).
"""
import logging

from services.transactions import records
from services.transactions.voting import collect_votes
from shared.errors import NotFound, ServiceUnavailable, ValidationFailed
from shared.ids import rfc3339
from shared.votes import APPROVE

log = logging.getLogger(__name__)

# Which side of each type is a customer account the caller must own. A payment is the
# payer's; its capture (payer -> merchant) and refund (merchant -> payer) the merchant's.
SOURCE_OWNED = {"withdrawal", "transfer", "payment", "refund"}
DESTINATION_OWNED = {"deposit", "capture"}
# What the ledger answers for a posting that did what it was asked.
POSTED_STATUSES = {"posted", "held"}
# Approved transactions older than this without a posting were dropped by a crash.
REPOST_AFTER_S = 10
# Undecided transactions older than this lost their vote round (a process died with them
# queued or voting): voted on again. Deciding twice is harmless — the first decision
# recorded stands (records.record_decision) and the posting is exactly once.
REDRIVE_AFTER_S = 10


def movement(kind, body):
    """``(source_account_id, destination_account_id)`` of a request; None is the
    currency's settlement account."""
    if kind == "deposit":
        return None, body["account_id"]
    if kind == "withdrawal":
        return body["account_id"], None
    return body["source_account_id"], body["destination_account_id"]


class Pipeline:
    def __init__(self, db, rpc, pool, vote_deadline_s):
        self.db = db
        self.rpc = rpc
        self.pool = pool
        self.vote_deadline_s = vote_deadline_s

    # --- 1. Preparation -------------------------------------------------------------

    def prepare(self, kind, initiator_id, body, idempotency_key, acting_as_admin=False):
        """Record the request ``pending``; ``(row, created, accounts)``, the accounts as
        read for the checks (the vote's snapshot reuses them)."""
        source_id, destination_id = movement(kind, body)
        if kind == "capture" and not body.get("authorization_id"):
            raise ValidationFailed("A capture names the authorization it captures.",
                                   errors={"authorization_id": ["Required."]})
        if source_id is not None and source_id == destination_id:
            raise ValidationFailed("The source and destination accounts must differ.",
                                   errors={"destination_account_id": ["Same as the source."]})
        accounts = self._accounts([source_id, destination_id])
        source, destination = accounts.get(source_id), accounts.get(destination_id)
        for role, account_id, account in (("source", source_id, source),
                                          ("destination", destination_id, destination)):
            if account_id is None:
                continue
            must_own = kind in (SOURCE_OWNED if role == "source" else DESTINATION_OWNED)
            if account is None or (must_own and not acting_as_admin
                                   and account["owner_id"] != initiator_id):
                # Not yours and not there look the same.
                raise NotFound("No such {} account.".format(role))
        values = {
            "type": kind,
            "initiator_id": initiator_id,
            "idempotency_key": idempotency_key,
            "source_account_id": source_id,
            "destination_account_id": destination_id,
            "source_owner_id": source["owner_id"] if source else None,
            "destination_owner_id": destination["owner_id"] if destination else None,
            "amount": body["amount"],
            "currency": body["currency"],
            "description": body.get("description"),
            "hold": kind == "payment" and bool(body.get("hold")),
            "authorization_id": body.get("authorization_id") if kind == "capture" else None,
        }
        with self.db.transaction() as connection:
            row, created = records.create_pending(connection, values)
        return row, created, accounts

    # --- 2. Validation ------------------------------------------------------------------

    def process(self, transaction_id, accounts=None):
        """Take one pending transaction as far as it goes; the row as it ends up."""
        return self.process_many([(transaction_id, accounts)])[transaction_id]

    def process_many(self, jobs):
        """Take pending transactions as far as they go, together: one snapshot, one vote
        round, one commit of the decisions, one posting and one commit of the outcomes
        for the whole batch. ``jobs``: ``(transaction_id, accounts read at preparation or
        None)``. Returns ``{transaction_id: row}``."""
        rows = self._find_many([transaction_id for transaction_id, _ in jobs])
        undecided = [row for row in rows.values()
                     if row.status == "pending" and row.decision is None]
        snapshot = {}
        if undecided:
            known = {}
            for _, accounts in jobs:
                known.update(accounts or {})
            try:
                snapshot = self._snapshot(undecided, known)
            except ServiceUnavailable as exc:
                # Nothing was voted on, nothing moved: fail now rather than leave them hanging.
                log.warning("no snapshot for %d transactions: %s", len(undecided), exc)
                rows.update(self._record_decisions(
                    [(row, "no_quorum", [], "service_unavailable") for row in undecided]))
                undecided = []
            rows.update(self.decide(undecided, snapshot))
        approved = [row for row in rows.values()
                    if row.status == "pending" and row.decision == APPROVE]
        if approved and snapshot:
            approved, stale = self._unchanged_since(approved, snapshot)
            rows.update(self._fail(stale, "account_changed"))
        if approved:
            limits = {row.id: snapshot[row.source_account_id]["overdraft_limit"]
                      for row in approved if row.source_account_id in snapshot}
            rows.update(self.execute(approved, limits))
        return rows

    def _unchanged_since(self, rows, snapshot):
        """Optimistic locking: ``(rows whose accounts are as the validators saw them,
        rows whose account changed since — frozen, limit lowered — in the meantime)``.
        If the accounts service does not answer, the ledger's constraints still guard
        the money, so the rows go on."""
        ids = sorted({account_id for row in rows for account_id in
                      (row.source_account_id, row.destination_account_id)
                      if account_id in snapshot})
        try:
            current = self._accounts(ids)
        except ServiceUnavailable as exc:
            log.warning("account versions not checked: %s", exc)
            return rows, []
        fresh, stale = [], []
        for row in rows:
            changed = any(
                account_id in snapshot and (account_id not in current or
                                            current[account_id]["version"]
                                            != snapshot[account_id]["version"])
                for account_id in (row.source_account_id, row.destination_account_id))
            (stale if changed else fresh).append(row)
        return fresh, stale

    def _fail(self, rows, reason):
        if not rows:
            return {}
        failed = {}
        with self.db.transaction() as connection:
            for row in rows:
                failed[row.id] = records.finish(connection, row.id, "failed",
                                                failure_reason=reason, step="failed")
        missing = [transaction_id for transaction_id, row in failed.items() if row is None]
        failed.update(self._find_many(missing))
        return failed

    def decide(self, rows, snapshot):
        """One vote round for ``rows``; their rows after the decisions are stored."""
        if not rows:
            return {}
        held_for = self._authorized_amounts(rows)
        items = [vote_item(row, snapshot, held_for.get(row.authorization_id, 0))
                 for row in rows]
        ballots = collect_votes(self.rpc, self.pool.names, items, self.pool.keys,
                                self.vote_deadline_s)
        outcomes = []
        for row in rows:
            ballot = ballots[row.id]
            decision = ballot.close()
            outcomes.append((row, decision, ballot.votes(), ballot.failure_reason(decision)))
        return self._record_decisions(outcomes)

    def _record_decisions(self, outcomes):
        decided = {}
        with self.db.transaction() as connection:
            for row, decision, votes, reason in outcomes:
                decided[row.id] = records.record_decision(connection, row.id, decision, votes,
                                                          reason)
        # None: another worker or the recovery decided first; its decision stands.
        missing = [transaction_id for transaction_id, row in decided.items() if row is None]
        decided.update(self._find_many(missing))
        return decided

    # --- 3. Execution and 4. rollback ----------------------------------------------------------

    def execute(self, rows, overdraft_limits=None):
        """Post approved ``rows`` in one ledger call. The source's overdraft limit is the
        one the validators saw, or (recovery) the account's current one."""
        limits = dict(overdraft_limits or {})
        try:
            unknown = [row.source_account_id for row in rows
                       if row.id not in limits and row.source_account_id]
            accounts = self._accounts(unknown)
            for row in rows:
                if row.id not in limits:
                    account = accounts.get(row.source_account_id)
                    limits[row.id] = account["overdraft_limit"] if account else 0
            results = self.rpc.ledger.post([posting(row, limits[row.id]) for row in rows])
        except ServiceUnavailable as exc:
            # Approved and maybe posted: recovery asks the ledger again later.
            log.warning("%d approved transactions not posted yet: %s", len(rows), exc)
            return self._find_many([row.id for row in rows])
        finished = {}
        with self.db.transaction() as connection:
            for row, result in zip(rows, results):
                if result["status"] in POSTED_STATUSES:
                    finished[row.id] = records.finish(
                        connection, row.id, "completed", step="posted",
                        entries=[entry["id"] for entry in result.get("entries", ())])
                else:
                    finished[row.id] = records.finish(
                        connection, row.id, "failed", failure_reason=result["reason"],
                        step="failed")
        missing = [transaction_id for transaction_id, row in finished.items() if row is None]
        finished.update(self._find_many(missing))
        return finished

    # --- 5. Recovery ----------------------------------------------------------------------

    def recover(self, undecided_timeout_s):
        """Finish what crashes left in flight; the number of transactions finished."""
        with self.db.transaction() as connection:
            timed_out = records.time_out_undecided(connection, undecided_timeout_s)
        with self.db.connection() as connection:
            stranded = records.undecided_in_flight(connection, REDRIVE_AFTER_S)
        redriven = 0
        if stranded:
            redriven = sum(row.status != "pending" for row in self.process_many(
                [(row.id, None) for row in stranded]).values())
        with self.db.connection() as connection:
            approved = records.approved_in_flight(connection, REPOST_AFTER_S)
        reposted = 0
        if approved:
            reposted = sum(row.status != "pending" for row in self.execute(approved).values())
        if timed_out or redriven or reposted:
            log.info("recovery: %d undecided failed, %d decided again, %d approved posted",
                     len(timed_out), redriven, reposted)
        return len(timed_out) + redriven + reposted

    # --- reading the other services ---------------------------------------------------

    def _find_many(self, transaction_ids):
        if not transaction_ids:
            return {}
        with self.db.connection() as connection:
            return {row.id: row for row in records.find_many(connection, transaction_ids)}

    def _authorized_amounts(self, rows):
        """``{authorization id: amount}`` of the authorizations ``rows`` capture: the hold
        a capture frees before it moves the money."""
        wanted = [row.authorization_id for row in rows if row.authorization_id]
        return {row.id: row.amount for row in self._find_many(wanted).values()}

    def _accounts(self, account_ids):
        wanted = [account_id for account_id in account_ids if account_id is not None]
        if not wanted:
            return {}
        return {account["id"]: account for account in self.rpc.accounts.get_many(wanted)}

    def _snapshot(self, rows, known_accounts):
        """Every account of ``rows`` with its balances, as the validators judge them."""
        ids = sorted({account_id for row in rows for account_id in
                      (row.source_account_id, row.destination_account_id) if account_id})
        accounts = dict(known_accounts)
        accounts.update(self._accounts([i for i in ids if i not in accounts]))
        balances = self.rpc.ledger.balances(ids)
        return {account_id: dict(accounts[account_id], **balances[account_id])
                for account_id in ids if account_id in accounts}


SNAPSHOT_FIELDS = ("id", "owner_id", "currency", "status", "overdraft_limit", "balance", "held")


def vote_item(row, snapshot, released=0):
    """What each validator judges: the transaction and the accounts as they are now. A
    capture first frees its authorization's hold (``released``), so the source's ``held``
    is shown without it: the capture spends the money held for it, not the money beside it."""
    def side(account_id):
        if account_id is None:
            return None
        account = snapshot.get(account_id)
        if account is None:
            return None
        item = {name: account[name] for name in SNAPSHOT_FIELDS}
        if account_id == row.source_account_id and released:
            item["held"] = max(0, item["held"] - released)
        return item

    return {
        "id": row.id,
        "type": row.type,
        "amount": row.amount,
        "currency": row.currency,
        "initiator_id": row.initiator_id,
        "source": side(row.source_account_id),
        "destination": side(row.destination_account_id),
        "created_at": rfc3339(row.created_at),
    }


def posting(row, debit_overdraft_limit):
    return {
        "transaction_id": row.id,
        "type": row.type,
        "currency": row.currency,
        "amount": row.amount,
        "debit_account_id": row.source_account_id,
        "credit_account_id": row.destination_account_id,
        "debit_overdraft_limit": debit_overdraft_limit,
        "hold": row.hold,
        "capture_of": row.authorization_id,
    }
