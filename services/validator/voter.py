"""Decides a batch of transactions: the rules of ``rules.py`` over this validator's risk state.

When Redis does not answer
--------------------------
The stateful rules (velocity, the usual amount, new counterparties) cannot be evaluated
without the risk state. The validator then decides on the stateless rules alone (funds,
status, currency, the per-transaction maximum, compliance lists), skips the stateful ones,
adds no reason for them and logs a warning.

Why not reject (fail closed): every validator of the pool shares the one Redis, so
rejecting would turn a Redis outage into a stop of all payments, a full outage of the
system's purpose. What guards the money does not depend on Redis: the funds and status
checks here use the account snapshot the transactions service sent, and the ledger's own
constraints refuse any posting that would overdraw an account. What is lost for the
outage is only the velocity and fraud screening, and the approvals of that time are not
counted afterwards (the state misses them); that is the trade, taken deliberately.
"""
import logging
import time

from eventlet.semaphore import Semaphore

from services.validator import rules
from shared.errors import ServiceUnavailable

log = logging.getLogger(__name__)

APPROVE, REJECT = "approve", "reject"
# At most one warning this often while Redis stays away (every vote would log otherwise).
WARN_EVERY_S = 10.0


class Voter:
    """``decide(transactions)``: one ``(transaction_id, decision, reasons)`` per item, in order."""

    def __init__(self, policy, store, clock=time.time):
        self.policy = policy
        self.store = store
        self.clock = clock
        # Read, decide and record must not interleave between two batches of this
        # validator, or both could approve against the same old velocity. The state is
        # this validator's own and one process serves each validator name, so a
        # process-wide lock makes the read-decide-write atomic at the cost of two Redis
        # round trips per batch (cheap, and bounded by the short socket timeout).
        self.lock = Semaphore(1)
        self._last_warning_s = None
        self._skipped = 0

    def decide(self, transactions):
        decisions = []  # [transaction_id, reasons] per item
        outflows = []  # (position, tx) of well-formed counted outflows: the stateful part
        for position, tx in enumerate(transactions):
            if not rules.is_well_formed(tx):
                # One bad item is rejected alone; the batch goes on.
                decisions.append([rules.transaction_id(tx), [rules.MALFORMED_TRANSACTION]])
                continue
            decisions.append([tx["id"], rules.stateless_reasons(tx, self.policy)])
            if tx["type"] in rules.COUNTED_OUTFLOWS:
                outflows.append((position, tx))
        if outflows:
            with self.lock:
                self._screen(outflows, decisions)
        return [(transaction_id, REJECT if reasons else APPROVE, reasons)
                for transaction_id, reasons in decisions]

    def _screen(self, outflows, decisions):
        """Add the stateful reasons to ``decisions`` and record the approvals."""
        now = self.clock()
        wanted = {}
        for _, tx in outflows:
            wanted.setdefault(_source_id(tx), set()).add(_destination_id(tx))
        try:
            views, counted = self.store.load(wanted, {_id(tx) for _, tx in outflows}, now)
        except ServiceUnavailable as exc:
            self._warn("stateful rules skipped for %d transaction(s), deciding on the "
                       "stateless rules alone: %s", len(outflows), exc)
            return
        recorded = set()
        for position, tx in outflows:
            reasons = decisions[position][1]
            if _id(tx) in counted or _id(tx) in recorded:
                # Voted on and counted before: its outflow is already in the numbers it
                # would be checked against, and must not be counted again.
                continue
            view = views[_source_id(tx)]
            destination = _destination_id(tx)
            reasons.extend(rules.stateful_reasons(
                tx["amount"], view.outflow_today, view.usual, view.recent_new,
                view.is_new(destination), self.policy))
            if not reasons:
                view.approve(tx["amount"], destination, rules.next_usual(view.usual, tx["amount"]))
                recorded.add(_id(tx))
        if not recorded:
            return
        try:
            self.store.record(views, recorded, now)
        except ServiceUnavailable as exc:
            # The decisions stand (they were made on the state); only their count is lost.
            self._warn("approvals of %d transaction(s) not recorded in the risk state: %s",
                       len(recorded), exc)

    def _warn(self, message, *args):
        self._skipped += 1
        now = time.monotonic()
        if self._last_warning_s is None or now - self._last_warning_s >= WARN_EVERY_S:
            log.warning(message + " (%d batch(es) affected since the last warning)",
                        *args, self._skipped)
            self._last_warning_s = now
            self._skipped = 0


def _id(tx):
    return rules.canonical_id(tx["id"])


def _source_id(tx):
    return rules.canonical_id(tx["source"]["id"])


def _destination_id(tx):
    destination = tx["destination"]
    return rules.canonical_id(destination["id"]) if destination is not None else None
