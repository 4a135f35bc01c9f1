"""What a service process has done, counted: RPC calls it made, RPCs it served, database
commits, and the milliseconds the money path spends in each of its steps (``timed``).
Every process of the system keeps these; ``ServiceBase.work_counters`` answers them over
RPC, and `make bench` reads them before and after a run to tell how many RPCs and commits
one transfer costs, and where a transfer's time goes.

Plain numbers, not a metrics library: counting must cost nothing on the hot path.
"""
import os
import time
from contextlib import contextmanager

RPC_CALLS = "rpc_calls"
RPCS_SERVED = "rpcs_served"
DB_COMMITS = "db_commits"

# The gateway's requests that move money, and their time in the gateway, first byte read
# to answer (summed).
MONEY_REQUESTS = "money_requests"
MONEY_REQUEST_MS = "money_request_ms"
# The gateway's money desk (gateway/desk.py): the requests it carried, the batches they
# went in, how long the requests waited for their batch to leave (summed over requests)
# and how long each batch's submit took (summed over batches).
DESK_REQUESTS = "desk_requests"
DESK_BATCHES = "desk_batches"
DESK_QUEUED_MS = "desk_queued_ms"
DESK_SUBMIT_MS = "desk_submit_ms"
# The transactions service: the batches it was handed (a gateway's submit, a client's
# batch), and the time each step of the consensus took them (services/transactions).
CONSENSUS_BATCHES = "consensus_batches"
CONSENSUS_STEPS = ("prepare", "vote", "decide", "post", "finish")
# The gateway's guard (gateway/guard.py): the stages shared by the requests in flight
# (shared/coalesce.py) that a money request passes besides its submit; a money desk
# route's key claim is made by the desk (gateway/desk.py) and counted here all the same.
# Per stage: the items it took, the round trips they shared, and their time in it (the
# wait for the round trip in flight, then their own; summed over items).
GUARD_STAGES = ("rate_limits", "idempotency_claim", "idempotency_answer")

_counts = {RPC_CALLS: 0, RPCS_SERVED: 0, DB_COMMITS: 0}


def step_ms(step):
    """The counter of the milliseconds spent in consensus step ``step``."""
    return "consensus_{}_ms".format(step)


_STAGE_COUNTERS = {stage: tuple("guard_{}_{}".format(stage, what)
                                 for what in ("items", "trips", "ms"))
                   for stage in GUARD_STAGES}


def stage_counters(stage):
    """``(items, round trips, ms)``: the counters of guard stage ``stage``."""
    if stage not in _STAGE_COUNTERS:
        raise ValueError("no guard stage {!r}".format(stage))
    return _STAGE_COUNTERS[stage]


def count_stage(stage, size, run_s, queued_s=0.0):
    """Count one round trip of guard stage ``stage`` for ``size`` items: each spent its
    wait for it (``queued_s``, summed over the items) and the whole of the round trip."""
    items, trips, ms = stage_counters(stage)
    count(items, size)
    count(trips)
    count(ms, (queued_s + run_s * size) * 1000)


def stage_observer(stage):
    """A ``Coalescer`` observer (shared/coalesce.py) counting guard stage ``stage``."""
    return lambda size, queued_s, run_s: count_stage(stage, size, run_s, queued_s)


def timed_step(step):
    """``timed`` for consensus step ``step`` (one of CONSENSUS_STEPS)."""
    if step not in CONSENSUS_STEPS:
        raise ValueError("no consensus step {!r}".format(step))
    return timed(step_ms(step))


def count(name, amount=1):
    _counts[name] = _counts.get(name, 0) + amount


@contextmanager
def timed(name):
    """Add the milliseconds the block takes to the counter ``name``."""
    started = time.perf_counter()
    try:
        yield
    finally:
        count(name, (time.perf_counter() - started) * 1000)


def snapshot():
    """The counters now, with the process's CPU seconds (user + system)."""
    times = os.times()
    return dict(_counts, cpu_s=times.user + times.system, pid=os.getpid())
