"""What a service process has done, counted: RPC calls it made, RPCs it served, database
commits. Every process of the system keeps these; ``ServiceBase.work_counters`` answers
them over RPC, and `make bench` reads them before and after a run to tell how many RPCs
and commits one transfer costs.

Plain integers, not a metrics library: counting must cost nothing on the hot path.
"""
import os

RPC_CALLS = "rpc_calls"
RPCS_SERVED = "rpcs_served"
DB_COMMITS = "db_commits"

_counts = {RPC_CALLS: 0, RPCS_SERVED: 0, DB_COMMITS: 0}


def count(name, amount=1):
    _counts[name] += amount


def snapshot():
    """The counters now, with the process's CPU seconds (user + system)."""
    times = os.times()
    return dict(_counts, cpu_s=times.user + times.system, pid=os.getpid())
