"""This validator's own view of risk, kept in Redis: velocity, usual amounts, counterparties.

Every key starts with ``paysys:<validator name>:`` (each validator of the pool keeps its
own view, as independent voters must) and every key has a TTL, so nothing grows forever:

=========================================  ======  ==========================================
key                                        type    holds
=========================================  ======  ==========================================
``velocity:<account>:<yyyymmdd>``          string  approved outflow of that UTC day (2 days)
``usual:<account>``                        string  EWMA of approved amounts (90 days idle)
``known:<account>``                        zset    destinations paid, by last payment (90 d)
``fresh:<account>``                        zset    destinations first paid, by when (10 min)
``counted:<yyyymmdd>``                     set     approvals recorded that UTC day (2 days)
=========================================  ======  ==========================================

A batch costs two round trips whatever its size: one pipeline reads what the batch needs,
one MULTI/EXEC writes what its approvals changed. Only approvals are recorded, and a
transaction is recorded once even if its vote is asked for again (a redelivered RPC, a
recovery re-vote), so a retry never counts the same money twice.
"""
from dataclasses import dataclass, field
from datetime import datetime, timezone

import redis

from shared.circuit import CircuitBreaker
from shared.errors import unanswered

DAY_S = 86400
VELOCITY_TTL_S = 2 * DAY_S  # a day's total outlives its day, for late readers and clock skew
MEMORY_TTL_S = 90 * DAY_S  # the usual amount and known counterparties of an idle account
COUNTED_TTL_S = 2 * DAY_S  # longer than any re-vote of the same transaction happens
WINDOW_S = 600  # "new counterparties within ten minutes"


@dataclass
class AccountRisk:
    """One source account's risk numbers during a batch: as read, then as the batch's
    approvals change them (so item 2 of a batch sees item 1's approved outflow)."""

    outflow_today: int = 0
    usual: int = None
    recent_new: int = 0
    known: set = field(default_factory=set)
    # What the batch's approvals add, written back after the batch.
    added_outflow: int = 0
    usual_changed: bool = False
    paid: set = field(default_factory=set)
    fresh: set = field(default_factory=set)

    def is_new(self, destination_id):
        return destination_id is not None and destination_id not in self.known

    def approve(self, amount, destination_id, next_usual):
        self.outflow_today += amount
        self.added_outflow += amount
        self.usual = next_usual
        self.usual_changed = True
        if destination_id is not None:
            if self.is_new(destination_id):
                self.recent_new += 1
                self.fresh.add(destination_id)
            self.known.add(destination_id)
            self.paid.add(destination_id)


class RiskStore:
    """Reads and records one validator's risk state. Every Redis failure comes out as
    ``ServiceUnavailable``; after a few in a row a circuit breaker stops asking for a while,
    so a dead Redis costs a vote nothing rather than a timeout each."""

    def __init__(self, client, validator_id):
        self.client = client
        self.prefix = "paysys:{}:".format(validator_id)
        self.breaker = CircuitBreaker("redis", failure_threshold=3, reset_timeout_s=5)

    def reachability(self):
        """``"ok"`` if Redis answers now, else why not (the validator's deep health)."""
        try:
            self.client.ping()
        except redis.RedisError as exc:
            return "unavailable: {}".format(exc)
        return "ok"

    def key(self, *parts):
        return self.prefix + ":".join(parts)

    def counted_keys(self, now):
        """Today's set of the approvals recorded, then yesterday's: a transaction voted on
        again (a redelivered call, a recovery's re-vote) around midnight was counted in
        one or the other."""
        return [self.key("counted", datetime.fromtimestamp(moment, timezone.utc).strftime(
            "%Y%m%d")) for moment in (now, now - DAY_S)]

    def velocity_key(self, account_id, now):
        day = datetime.fromtimestamp(now, timezone.utc).strftime("%Y%m%d")
        return self.key("velocity", account_id, day)

    def load(self, wanted, transaction_ids, now):
        """``({account: AccountRisk}, {transaction ids already counted})``.

        ``wanted`` maps each source account to the destination ids (None for none) the
        batch pays from it; one pipeline reads it all."""
        return self.breaker.call(self._guarded, self._load, wanted, transaction_ids, now)

    def record(self, views, counted_ids, now):
        """Write what the approvals of a batch changed, all or nothing (MULTI/EXEC)."""
        return self.breaker.call(self._guarded, self._record, views, counted_ids, now)

    @staticmethod
    def _guarded(function, *args):
        try:
            return function(*args)
        except redis.RedisError as exc:
            raise unanswered("Redis: {}".format(exc)) from exc

    def _load(self, wanted, transaction_ids, now):
        accounts = list(wanted)
        ids = list(transaction_ids)
        pipe = self.client.pipeline(transaction=False)
        for account in accounts:
            destinations = [d for d in wanted[account] if d is not None]
            pipe.get(self.velocity_key(account, now))
            pipe.get(self.key("usual", account))
            pipe.zcount(self.key("fresh", account), "({}".format(now - WINDOW_S), "+inf")
            if destinations:
                pipe.zmscore(self.key("known", account), destinations)
        if ids:  # one look per day a re-vote may reach back to, however many there are
            for day in self.counted_keys(now):
                pipe.smismember(day, ids)
        replies = iter(pipe.execute())
        views = {}
        for account in accounts:
            destinations = [d for d in wanted[account] if d is not None]
            outflow, usual, recent_new = next(replies), next(replies), next(replies)
            scores = next(replies) if destinations else []
            views[account] = AccountRisk(
                outflow_today=int(outflow or 0),
                usual=int(usual) if usual is not None else None,
                recent_new=int(recent_new),
                known={d for d, score in zip(destinations, scores) if score is not None},
            )
        counted = set()
        if ids:
            for found in (next(replies) for _ in self.counted_keys(now)):
                counted.update(t for t, seen in zip(ids, found) if seen)
        return views, counted

    def _record(self, views, counted_ids, now):
        pipe = self.client.pipeline(transaction=True)
        for account, view in views.items():
            if view.added_outflow:
                key = self.velocity_key(account, now)
                pipe.incrby(key, view.added_outflow)
                pipe.expire(key, VELOCITY_TTL_S)
            if view.usual_changed:
                pipe.set(self.key("usual", account), view.usual, ex=MEMORY_TTL_S)
            if view.paid:
                key = self.key("known", account)
                pipe.zadd(key, {destination: now for destination in view.paid})
                pipe.zremrangebyscore(key, "-inf", now - MEMORY_TTL_S)
                pipe.expire(key, MEMORY_TTL_S)
            if view.fresh:
                key = self.key("fresh", account)
                pipe.zadd(key, {destination: now for destination in view.fresh})
                pipe.zremrangebyscore(key, "-inf", now - WINDOW_S)
                pipe.expire(key, WINDOW_S)
        if counted_ids:
            today = self.counted_keys(now)[0]
            pipe.sadd(today, *counted_ids)
            pipe.expire(today, COUNTED_TTL_S)
        if len(pipe):
            pipe.execute()
