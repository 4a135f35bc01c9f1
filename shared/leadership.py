"""One process at a time runs each round of a background loop, whatever the replicas.

Every replica of a service runs the service's timers (Nameko starts them in each
process). A round that sweeps the whole database (recovery, expiry, purges) then runs
once per replica, each doing the same work: the loops are written to stay correct
anyway (each change is a conditional UPDATE, the ledger posts a transaction once), but
two recoveries of the same transaction are two vote rounds and two postings asked for.
So a round first takes its loop's PostgreSQL advisory lock, without waiting
(``pg_try_advisory_lock``), on a connection it holds for the round: the replica that
gets it runs the round, the others skip theirs. The lock goes with its session: when the
replica leading a round dies, PostgreSQL drops its connection and the lock with it, and
the next tick of any survivor leads. Nothing to elect, nothing to configure.

Work shared out row by row (notification deliveries: ``SKIP LOCKED`` and leases) and the
outbox relays (their own claim, shared/outbox_relay/rounds.py) need none of this.
"""
import functools
import hashlib

from shared.outbox_relay.rounds import claimed


def lock_key(loop):
    """The advisory lock key of ``loop`` ("transactions.recovery"): a signed 64-bit number
    every process derives alike."""
    digest = hashlib.blake2b(("paysys.loop:" + loop).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def leading(engine, loop):
    """A context manager: the connection holding ``loop``'s lock for the block (this
    process leads the round), or None (another process does)."""
    return claimed(engine, lock_key(loop))


def one_replica_at_a_time(loop):
    """Decorates a service's timer method: its round runs only in the replica that
    leads ``loop`` now (``self.db``'s engine holds the lock); elsewhere it returns None.

        @timer(interval=5)
        @one_replica_at_a_time("payments.expiry")
        def expire(self): ...
    """
    def decorate(method):
        @functools.wraps(method)
        def led(self, *args, **kwargs):
            with leading(self.db.engine, loop) as lead:
                if lead is None:
                    return None
                return method(self, *args, **kwargs)
        return led
    return decorate
