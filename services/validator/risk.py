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
one script writes what its approvals changed. Only approvals are recorded, and a
transaction is recorded once even if its vote is asked for again (a redelivered RPC, a
recovery re-vote), so a retry never counts the same money twice.

Several processes may serve one validator (replicas): the write is a compare-and-set. The
script checks that each account whose outflow the batch adds to still has the day's total
the batch was judged on, and writes nothing if one does not (``record`` answers False);
the voter then judges the batch again on the fresh numbers. So two processes of a
validator can never approve past its daily limit together, as one process could not.
"""
import json
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
    # The day's total as read: the record is refused if another process changed it since.
    read_outflow: int = 0
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
        """Write what the approvals of a batch changed, all or nothing, if no outflow it
        adds to changed since ``load``; False (nothing written) if one did."""
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
                read_outflow=int(outflow or 0),
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
        plan = {"expect": [], "incr": [], "set": [], "zadd": [], "counted": []}
        for account, view in views.items():
            if view.added_outflow:
                key = self.velocity_key(account, now)
                plan["expect"].append([key, view.read_outflow])
                plan["incr"].append([key, view.added_outflow, VELOCITY_TTL_S])
            if view.usual_changed:
                plan["set"].append([self.key("usual", account), view.usual, MEMORY_TTL_S])
            if view.paid:
                plan["zadd"].append([self.key("known", account), now, now - MEMORY_TTL_S,
                                     MEMORY_TTL_S, sorted(view.paid)])
            if view.fresh:
                plan["zadd"].append([self.key("fresh", account), now, now - WINDOW_S,
                                     WINDOW_S, sorted(view.fresh)])
        if counted_ids:
            plan["counted"] = [self.counted_keys(now)[0], COUNTED_TTL_S, sorted(counted_ids)]
        if not any(plan.values()):
            return True
        return bool(self._compare_and_write(args=[json.dumps(plan)]))

    @property
    def _compare_and_write(self):
        script = getattr(self, "_script", None)
        if script is None:
            script = self._script = self.client.register_script(COMPARE_AND_WRITE)
        return script


# Atomic in Redis: every expected day's total still as read, then every write; else none.
# One call, so a batch's record costs one round trip however many accounts it touches.
COMPARE_AND_WRITE = """
local plan = cjson.decode(ARGV[1])
for _, check in ipairs(plan.expect) do
  if tonumber(redis.call('GET', check[1]) or '0') ~= check[2] then return 0 end
end
for _, w in ipairs(plan.incr) do
  redis.call('INCRBY', w[1], w[2])
  redis.call('EXPIRE', w[1], w[3])
end
for _, w in ipairs(plan.set) do redis.call('SET', w[1], w[2], 'EX', w[3]) end
for _, z in ipairs(plan.zadd) do
  for _, member in ipairs(z[5]) do redis.call('ZADD', z[1], z[2], member) end
  redis.call('ZREMRANGEBYSCORE', z[1], '-inf', z[3])
  redis.call('EXPIRE', z[1], z[4])
end
if plan.counted[1] then
  for _, id in ipairs(plan.counted[3]) do redis.call('SADD', plan.counted[1], id) end
  redis.call('EXPIRE', plan.counted[1], plan.counted[2])
end
return 1
"""
