"""The consensus protocol, a batch of transactions at a time.

1. Preparation (``prepare``): the accounts exist and the caller may move money out of
   the source (a stranger's account is a 404), read in one snapshot from the ledger; the
   transactions are recorded ``pending``, once per idempotency key, in one commit.
2. Validation (``decide``): the snapshot and the batch, in order, go to every validator
   in one call each; a majority of the pool decides each item; the counted votes, the
   validators' signed answers they came in and the accounts' versions the approval rests
   on are stored in one commit.
3. Execution (``execute``): the ledger posts the approved transactions in one database
   commit, exactly once per transaction id, after checking under its row locks that each
   account is still as approved (status, currency, version) and holds the money; then
   they are ``completed``, in one commit with their events.
4. Rollback: a rejection, a missing quorum or a posting the ledger refuses marks the
   transaction ``failed`` with the reason; nothing was moved. In an atomic batch one
   failure fails every item (the others with ``batch_aborted``).
5. Recovery (``recover``): approved but unposted transactions are posted again
   (idempotently), undecided ones are voted on again and, past a timeout, failed.

Each step costs a batch the same round trips and commits however many transactions it
holds: that is where the throughput comes from.
"""
import logging
from collections import OrderedDict
from dataclasses import dataclass, field

import eventlet

from services.transactions import batches as batch_records
from services.transactions import metrics, overdue, records, transitions
from services.transactions.records import NewTransaction
from services.transactions.transitions import Decision, Ending
from services.transactions.voting import collect_votes
from shared.errors import NotFound, ServiceUnavailable
from shared import work_counters
from shared.ids import rfc3339
from shared.votes import APPROVE

log = logging.getLogger(__name__)

# Which side of each type is a customer account the caller must own. A payment is the
# payer's; its capture (payer -> merchant) and refund (merchant -> payer) the merchant's.
SOURCE_OWNED = {"withdrawal", "transfer", "payment", "refund"}
DESTINATION_OWNED = {"deposit", "capture"}
# What the ledger answers for a posting that did what it was asked.
POSTED_STATUSES = {"posted", "held"}
# Who a step was taken by when it was not the ordinary flow.
RECOVERY = "recovery"
# An approved item of an atomic batch that another item failed.
BATCH_ABORTED = "batch_aborted"
# The most postings one ledger call takes.
MAX_POSTINGS_PER_CALL = 1000
# Approved transactions older than this without a posting were dropped by a crash.
REPOST_AFTER_S = 10
# Undecided transactions older than this lost their vote round (a process died with them
# queued or voting): voted on again. Deciding twice is harmless — the first decision
# recorded stands (transitions.record_decisions) and the posting is exactly once.
REDRIVE_AFTER_S = 10


@dataclass
class Prepared:
    """Preparation's answer: per movement, in order, its row or the error refusing it;
    the rows it created (the ones this call goes on to decide); the accounts as read."""

    outcomes: list
    created: list = field(default_factory=list)
    snapshot: dict = field(default_factory=dict)


class Pipeline:
    def __init__(self, db, rpc, pool, vote_deadline_s, owners):
        self.db = db
        self.rpc = rpc
        self.pool = pool
        self.vote_deadline_s = vote_deadline_s
        self.owners = owners

    # --- 1. Preparation -------------------------------------------------------------

    def snapshot(self, account_ids):
        """The accounts (state and money) as the ledger has them now, in one call."""
        wanted = sorted({account_id for account_id in account_ids if account_id})
        return self.rpc.ledger.snapshot(wanted) if wanted else {}

    def prepare(self, movements):
        """Check and record each of ``movements`` (shared.commands.Movement); a movement
        the caller may not make gets its error and records nothing.

        An account's owner never changes, so once known (``owners``) it needs no call:
        then the accounts' state and money are read from the ledger while the batch is
        recorded, not before."""
        wanted = {account for movement in movements for account in movement.accounts}
        owners = self.owners.known(wanted)
        reading = None
        if len(owners) < len(wanted):
            snapshot = self.snapshot(wanted)
            owners = self.owners.learn(snapshot)
        else:
            reading = eventlet.spawn(self._snapshot_or_none, wanted)
        outcomes, new = [None] * len(movements), []
        for index, movement in enumerate(movements):
            try:
                new.append((index, check_movement(movement, owners)))
            except NotFound as error:
                outcomes[index] = error
        created = []
        try:
            if new:
                with self.db.transaction() as connection:
                    rows = records.create_pending(connection, [item for _, item in new])
                for (index, _), (row, was_created) in zip(new, rows):
                    outcomes[index] = row
                    if was_created:
                        created.append(row)
        finally:
            if reading is not None:
                snapshot = reading.wait()
        return Prepared(outcomes, created, snapshot)

    def _snapshot_or_none(self, account_ids):
        """The snapshot, or None if the ledger does not answer (``process`` reads again)."""
        try:
            return self.snapshot(account_ids)
        except ServiceUnavailable as exc:
            log.warning("no snapshot of %d accounts yet: %s", len(account_ids), exc)
            return None

    def prepare_batch(self, batch):
        """Check every item of ``batch`` (shared.commands.TransferBatch) and record it all
        in one commit: ``(batch row, created, item rows, snapshot)``. One item the caller
        may not make refuses the whole batch (``NotFound`` naming the item)."""
        movements = batch.movements
        snapshot = self.snapshot([a for movement in movements for a in movement.accounts])
        owners = self.owners.learn(snapshot)
        new = []
        for index, movement in enumerate(movements):
            try:
                new.append(check_movement(movement, owners, batch_index=index))
            except NotFound as error:
                raise NotFound("transfers.{}: {}".format(index, error.detail)) from None
        with self.db.transaction() as connection:
            row, created = batch_records.create(connection, batch.initiator_id,
                                                batch.idempotency_key, batch.atomic,
                                                len(movements))
            if created:
                records.create_pending(connection, new, batch_id=row.id)
            items = batch_records.items_of(connection, row.id)
        return row, created, items, snapshot

    # --- 2. Validation ------------------------------------------------------------------

    def process(self, rows, snapshot=None, atomic=False, by=None):
        """Take pending ``rows`` as far as they go, together; ``{transaction_id: row}`` as
        they end up. ``snapshot``: the accounts as preparation read them (else read now);
        ``by``: who takes them out of the ordinary (recovery), for the steps."""
        done = {row.id: row for row in rows}
        undecided = [row for row in rows if row.status == records.PENDING
                     and row.decision is None]
        if undecided:
            try:
                if snapshot is None:
                    snapshot = self.snapshot([a for row in undecided for a in _accounts(row)])
                done.update(self.decide(undecided, snapshot, atomic, by))
            except ServiceUnavailable as exc:
                # Nothing was voted on, nothing moved: they stay pending for the recovery.
                log.warning("%d transactions not decided yet: %s", len(undecided), exc)
        approved = [row for row in done.values()
                    if row.status == records.PENDING and row.decision == APPROVE]
        if approved:
            done.update(self.execute(approved, atomic, by))
        return done

    def decide(self, rows, snapshot, atomic=False, by=None):
        """One vote round for ``rows``; their rows after the decisions are stored."""
        held_for = self._authorized_amounts(rows)
        items = [vote_item(row, snapshot, held_for.get(row.authorization_id, 0))
                 for row in rows]
        with work_counters.timed_step("vote"):
            voted = collect_votes(self.rpc, self.pool.names, items, self.pool.keys,
                                  self.vote_deadline_s)
        decisions = []
        for row in rows:
            ballot = voted.ballots[row.id]
            decision = ballot.close()
            source, destination = (snapshot.get(row.source_account_id),
                                   snapshot.get(row.destination_account_id))
            decisions.append(Decision(
                row.id, decision, ballot.votes(), ballot.failure_reason(decision),
                source["version"] if source else None,
                destination["version"] if destination else None))
        if atomic and any(d.failure_reason for d in decisions):
            decisions = [d if d.failure_reason else Decision(
                d.transaction_id, d.decision, d.votes, BATCH_ABORTED, d.source_version,
                d.destination_version) for d in decisions]
        with work_counters.timed_step("decide"), self.db.transaction() as connection:
            # The signed answers go with the votes they verify, in the same commit.
            records.insert_vote_rounds(connection, voted.signed)
            decided = transitions.record_decisions(connection, decisions, by)
        metrics.count_decided(decided.values())
        # Missing: another worker or the recovery decided first; its decision stands.
        decided.update(self._find_many([row.id for row in rows if row.id not in decided]))
        return decided

    # --- 3. Execution and 4. rollback ----------------------------------------------------

    def execute(self, rows, atomic=False, by=None):
        """Post approved ``rows`` (in order) and record how each ended."""
        endings = []
        for start in range(0, len(rows), MAX_POSTINGS_PER_CALL):
            chunk = rows[start:start + MAX_POSTINGS_PER_CALL]
            try:
                with work_counters.timed_step("post"):
                    results = self.rpc.ledger.post([posting(row) for row in chunk],
                                                   atomic=atomic)
            except ServiceUnavailable as exc:
                # Approved and maybe posted: recovery asks the ledger again later.
                log.warning("%d approved transactions not posted yet: %s", len(chunk), exc)
                continue
            for row, result in zip(chunk, results):
                if result["status"] in POSTED_STATUSES:
                    endings.append(Ending(row.id, records.COMPLETED, step="posted", detail={
                        "entries": [entry["id"] for entry in result.get("entries", ())]}))
                else:
                    endings.append(Ending(row.id, records.FAILED, result["reason"]))
        finished = {}
        if endings:
            with work_counters.timed_step("finish"), self.db.transaction() as connection:
                finished = transitions.finish(connection, endings, by)
            metrics.count_finished(finished.values())
        finished.update(self._find_many([row.id for row in rows if row.id not in finished]))
        return finished

    # --- 5. Recovery ----------------------------------------------------------------------

    def recover(self, undecided_timeout_s):
        """Finish what crashes left in flight; the number of transactions finished."""
        with self.db.transaction() as connection:
            timed_out = overdue.time_out_undecided(connection, undecided_timeout_s)
        metrics.count_decided(timed_out)
        with self.db.connection() as connection:
            stranded = overdue.undecided_in_flight(connection, REDRIVE_AFTER_S)
            approved = overdue.approved_in_flight(connection, REPOST_AFTER_S)
        finished = 0
        for rows, atomic in self._groups(stranded) + self._groups(approved):
            finished += sum(row.status != records.PENDING
                            for row in self._recover_group(rows, atomic).values())
        if timed_out or finished:
            log.info("recovery: %d undecided failed, %d finished", len(timed_out), finished)
        return len(timed_out) + finished

    def _recover_group(self, rows, atomic):
        """``process`` a group; if that fails outright (a posting the ledger cannot take at
        all, say), each of its transactions alone — so one bad transaction stalls only
        itself, never the rest of the recovery. An atomic batch stays whole."""
        try:
            return self.process(rows, atomic=atomic, by=RECOVERY)
        except Exception:  # noqa: BLE001 - logged; the group is tried one by one
            log.exception("recovery: a group of %d transactions failed", len(rows))
        if atomic or len(rows) == 1:
            return {}
        done = {}
        for row in rows:
            try:
                done.update(self.process([row], by=RECOVERY))
            except Exception:  # noqa: BLE001 - this one stays pending; the rest go on
                log.exception("recovery: transaction %s not finished", row.id)
        return done

    def _groups(self, rows):
        """``[(rows, atomic)]``: each atomic batch whole and on its own (its items decide
        and post together), everything else together."""
        if not rows:
            return []
        with self.db.connection() as connection:
            atomic = batch_records.atomic_ones(
                connection, {row.batch_id for row in rows if row.batch_id})
            whole = overdue.pending_of_batches(connection, atomic)
        loose = [row for row in rows if row.batch_id not in atomic]
        groups = [(loose, False)] if loose else []
        for batch_id in sorted(atomic):
            groups.append(([row for row in whole if row.batch_id == batch_id], True))
        return groups

    # --- reading ----------------------------------------------------------------------------

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


def check_movement(movement, owners, batch_index=None):
    """The ``NewTransaction`` of ``movement`` (shared.commands.Movement), given the owner of
    each account there is (``owners``); NotFound if an account it names is not there, or
    is not the caller's where it must be (the two look the same)."""
    found = {}
    for role, account_id in (("source", movement.source_account_id),
                             ("destination", movement.destination_account_id)):
        if account_id is None:
            continue
        owner = owners.get(account_id)
        must_own = movement.kind in (SOURCE_OWNED if role == "source" else DESTINATION_OWNED)
        if owner is None or (must_own and not movement.acting_as_admin
                             and owner != movement.initiator_id):
            raise NotFound("No such {} account.".format(role))
        found[role] = owner
    return NewTransaction(movement, found.get("source"), found.get("destination"),
                          batch_index)


class Owners:
    """Who owns each account, as the ledger said: an account never changes owner, so what
    was learnt once holds for good (bounded: the least recently used are forgotten)."""

    def __init__(self, limit=100_000):
        self.limit = limit
        self.owner_of = OrderedDict()

    def known(self, account_ids):
        """``{account_id: owner_id}`` of those of ``account_ids`` already known."""
        found = {}
        for account_id in account_ids:
            owner = self.owner_of.get(account_id)
            if owner is not None:
                self.owner_of.move_to_end(account_id)
                found[account_id] = owner
        return found

    def learn(self, snapshot):
        """Remember the owners in ``snapshot``; ``{account_id: owner_id}`` of it."""
        owners = {account_id: account["owner_id"] for account_id, account in snapshot.items()}
        self.owner_of.update(owners)
        while len(self.owner_of) > self.limit:
            self.owner_of.popitem(last=False)
        return owners


def _accounts(row):
    return [a for a in (row.source_account_id, row.destination_account_id) if a]


SNAPSHOT_FIELDS = ("id", "owner_id", "currency", "status", "overdraft_limit", "balance", "held")


def vote_item(row, snapshot, released=0):
    """What each validator judges: the transaction and the accounts as they are now. A
    capture first frees its authorization's hold (``released``), so the source's ``held``
    is shown without it: the capture spends the money held for it, not the money beside it."""
    def side(account_id):
        account = snapshot.get(account_id) if account_id is not None else None
        if account is None:
            return None
        item = {name: account[name] for name in SNAPSHOT_FIELDS}
        if account_id == row.source_account_id and released:
            item["held"] = max(0, item["held"] - released)
        return item

    return {
        "id": row.id,
        "type": row.type,
        "hold": row.hold,
        "amount": row.amount,
        "currency": row.currency,
        "initiator_id": row.initiator_id,
        "source": side(row.source_account_id),
        "destination": side(row.destination_account_id),
        "created_at": rfc3339(row.created_at),
    }


def posting(row):
    """The ledger posting of an approved transaction, with the versions it was approved on."""
    versions = {}
    if row.source_account_id and row.source_version is not None:
        versions[row.source_account_id] = row.source_version
    if row.destination_account_id and row.destination_version is not None:
        versions[row.destination_account_id] = row.destination_version
    return {
        "transaction_id": row.id,
        "type": row.type,
        "currency": row.currency,
        "amount": row.amount,
        "debit_account_id": row.source_account_id,
        "credit_account_id": row.destination_account_id,
        "hold": row.hold,
        "capture_of": row.authorization_id,
        "expected_versions": versions,
    }
