"""Faults of a pg_auto_failover formation (paysys/postgres_ha.py): the primary's machine lost.

    name, failover_s = kill_primary(cluster)    # kill -9, stays down, standby promoted
    rejoin(cluster, name)                       # started again: back as the standby

A lost machine is kill -9 of its keeper and its PostgreSQL, and nothing starting them
again until it is repaired. supervisord would start a killed keeper at once (and the
keeper its PostgreSQL, still primary, before the monitor decides anything), so the node is
frozen first, supervisord told to stop it, then every process of it killed: supervisord
then counts it stopped, not crashed.
"""
import os
import signal
import threading
import time

from harness.servers import wait_for


def _postmaster_pid(cluster, name):
    try:
        return int((cluster.pgdata(name) / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _program_state(cluster, name):
    parts = cluster.supervisorctl("status", cluster.program(name)).stdout.split()
    return parts[1] if len(parts) > 1 else ""


def kill_node(cluster, name):
    """kill -9 ``name``'s keeper and PostgreSQL; it stays down until ``rejoin``."""
    keeper = cluster.keeper_pid(name)
    postmaster = _postmaster_pid(cluster, name)
    if keeper is None:
        raise AssertionError("{} is not running".format(cluster.program(name)))
    # supervisord runs each program in its own process group, which the postmaster
    # shares (its backends have their own sessions: they exit when it dies).
    os.killpg(keeper, signal.SIGSTOP)
    stopping = threading.Thread(target=cluster.supervisorctl,
                                args=("stop", cluster.program(name)))
    stopping.start()
    try:
        wait_for(lambda: _program_state(cluster, name) == "STOPPING", 10, interval_s=0.05,
                 what="supervisord stopping {}".format(cluster.program(name)))
    finally:
        os.killpg(keeper, signal.SIGKILL)
        if postmaster is not None:
            try:
                os.kill(postmaster, signal.SIGKILL)
            except ProcessLookupError:
                pass
        stopping.join()


def kill_primary(cluster, timeout_s=180):
    """Kill the primary's node; ``(its name, seconds until the standby was promoted and
    took writes)``."""
    name = cluster.primary()
    if name is None:
        raise AssertionError("no primary: {}".format(cluster.describe()))
    killed = time.monotonic()
    kill_node(cluster, name)
    wait_for(lambda: cluster.primary() not in (None, name), timeout_s, interval_s=0.2,
             what="a new primary after {} was killed".format(name))
    return name, time.monotonic() - killed


def rejoin(cluster, name, timeout_s=180):
    """Start the lost node again; seconds until it is the synchronous standby again (the
    keeper rewinds it to the new primary's history)."""
    started = time.monotonic()
    done = cluster.supervisorctl("start", cluster.program(name))
    if done.returncode != 0:
        raise AssertionError(done.stdout + done.stderr)
    wait_for(lambda: cluster.healthy() or cluster.hurry_base_backups(), timeout_s,
             interval_s=0.5, what="{} back as the standby".format(name))
    return time.monotonic() - started
