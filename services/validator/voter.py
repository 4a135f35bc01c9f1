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
import random
import time

import eventlet

from eventlet.semaphore import Semaphore

from services.validator import rules
from shared.errors import ServiceUnavailable
from shared.votes import APPROVE, REJECT

log = logging.getLogger(__name__)

# At most one warning this often while Redis stays away (every vote would log otherwise).
WARN_EVERY_S = 10.0
# Judgements of one batch before giving up when another process of this validator keeps
# changing the same accounts' numbers (each retry reads them afresh, after a short random
# pause, so two processes racing for one account do not stay in step).
JUDGE_ATTEMPTS = 10
RETRY_PAUSE_S = 0.005


class Voter:
    """``decide(transactions)``: one ``(transaction_id, decision, reasons)`` per item, in order.

    Items are judged in the order given, as the ledger applies them: an item sees the
    balances the approved items before it in the same call leave (``Running``), so a
    batch that pays into an account and then out of it is judged as it will be posted."""

    def __init__(self, policy, store, clock=time.time):
        self.policy = policy
        self.store = store
        self.clock = clock
        # Read, decide and record must not interleave between two batches of this
        # validator, or both could approve against the same old velocity. Within a
        # process a lock serialises them (two Redis round trips per batch, bounded by the
        # short socket timeout); between the processes of one validator (replicas) the
        # record is a compare-and-set (risk.py), and a batch whose numbers changed under
        # it is judged again.
        self.lock = Semaphore(1)
        self._last_warning_s = None
        self._skipped = 0

    def decide(self, transactions):
        well_formed = [rules.is_well_formed(tx) for tx in transactions]
        outflows = [tx for tx, good in zip(transactions, well_formed)
                    if good and tx["type"] in rules.COUNTED_OUTFLOWS]
        if not outflows:
            return self._judge(transactions, well_formed, None, None)
        with self.lock:
            for attempt in range(JUDGE_ATTEMPTS):
                if attempt:
                    eventlet.sleep(random.uniform(0, RETRY_PAUSE_S * attempt))
                now = self.clock()
                decisions = self._judge(transactions, well_formed, self._risk(outflows, now),
                                        now)
                if decisions is not None:
                    return decisions
        # Another process of this validator changed these accounts' numbers every time:
        # no vote rather than one judged on numbers known to be old.
        raise ServiceUnavailable("the risk state of {} account(s) kept changing under "
                                 "another process of this validator".format(len(outflows)),
                                 retry_after_s=1)

    def _judge(self, transactions, well_formed, risk, now):
        """Every item in order; the approvals recorded in the risk state. None if another
        process of this validator changed an outflow they add to since it was read."""
        decisions = []
        running = Running()
        recorded = set()
        for tx, good in zip(transactions, well_formed):
            if not good:
                # One bad item is rejected alone; the batch goes on.
                decisions.append((rules.transaction_id(tx), REJECT,
                                  [rules.MALFORMED_TRANSACTION]))
                continue
            reasons = rules.stateless_reasons(running.seen(tx), self.policy)
            if risk is not None and tx["type"] in rules.COUNTED_OUTFLOWS:
                reasons += self._screen(tx, risk, recorded, approve=not reasons)
            if not reasons:
                running.apply(tx)
            decisions.append((tx["id"], REJECT if reasons else APPROVE, reasons))
        if recorded:
            views, _ = risk
            try:
                if not self.store.record(views, recorded, now):
                    return None
            except ServiceUnavailable as exc:
                # The decisions stand (they were made on the state); only their count is lost.
                self._warn("approvals of %d transaction(s) not recorded in the risk state: %s",
                           len(recorded), exc)
        return decisions

    def _risk(self, outflows, now):
        """``(views, counted)`` of the risk state the outflows need, or None when Redis does
        not answer (the stateful rules are then skipped)."""
        wanted = {}
        for tx in outflows:
            wanted.setdefault(_source_id(tx), set()).add(_destination_id(tx))
        try:
            return self.store.load(wanted, {_id(tx) for tx in outflows}, now)
        except ServiceUnavailable as exc:
            self._warn("stateful rules skipped for %d transaction(s), deciding on the "
                       "stateless rules alone: %s", len(outflows), exc)
            return None

    def _screen(self, tx, risk, recorded, approve):
        """The stateful reasons against ``tx``; an approval changes the state it leaves."""
        views, counted = risk
        if _id(tx) in counted or _id(tx) in recorded:
            # Voted on and counted before: its outflow is already in the numbers it
            # would be checked against, and must not be counted again.
            return []
        view = views[_source_id(tx)]
        destination = _destination_id(tx)
        reasons = rules.stateful_reasons(
            tx["amount"], view.outflow_today, view.usual, view.recent_new,
            view.is_new(destination), self.policy)
        if approve and not reasons:
            view.approve(tx["amount"], destination, rules.next_usual(view.usual, tx["amount"]))
            recorded.add(_id(tx))
        return reasons

    def _warn(self, message, *args):
        self._skipped += 1
        now = time.monotonic()
        if self._last_warning_s is None or now - self._last_warning_s >= WARN_EVERY_S:
            log.warning(message + " (%d batch(es) affected since the last warning)",
                        *args, self._skipped)
            self._last_warning_s = now
            self._skipped = 0


class Running:
    """What the approved items of one call have done to the accounts so far."""

    def __init__(self):
        self.balance = {}  # account id -> change of its balance
        self.held = {}  # account id -> change of its held money

    def seen(self, tx):
        """``tx`` with its accounts as the items approved before it leave them."""
        if not self.balance and not self.held:
            return tx
        adjusted = dict(tx)
        for side in ("source", "destination"):
            account = tx[side]
            if account is not None and (account["id"] in self.balance
                                        or account["id"] in self.held):
                adjusted[side] = dict(account, balance=account["balance"]
                                      + self.balance.get(account["id"], 0),
                                      held=account["held"] + self.held.get(account["id"], 0))
        return adjusted

    def apply(self, tx):
        amount = tx["amount"]
        source, destination = tx["source"], tx["destination"]
        if tx["type"] == "payment" and tx.get("hold"):
            self.held[source["id"]] = self.held.get(source["id"], 0) + amount
            return
        if source is not None:
            self.balance[source["id"]] = self.balance.get(source["id"], 0) - amount
        if destination is not None:
            self.balance[destination["id"]] = self.balance.get(destination["id"], 0) + amount


def _id(tx):
    return rules.canonical_id(tx["id"])


def _source_id(tx):
    return rules.canonical_id(tx["source"]["id"])


def _destination_id(tx):
    destination = tx["destination"]
    return rules.canonical_id(destination["id"]) if destination is not None else None
