"""Background rounds with several replicas (shared/leadership.py), against the real
database: two replicas' rounds at once run once; a round skipped while another replica
leads runs once that one is done; the lead moves to a survivor when its leader dies."""
import eventlet
from eventlet.event import Event
from sqlalchemy import text

from shared.leadership import leading, lock_key, one_replica_at_a_time
from tests.support.databases import pooled_engine

LOOP = "tests.sweep"


class Replica:
    """A service process's view of a background loop: its own engine (its own sessions,
    as a replica has), and a round that waits, while leading, until told to finish."""

    def __init__(self, engine):
        self.db = type("Db", (), {"engine": engine})()
        self.rounds = 0
        self.release = Event()
        self.started = Event()

    @one_replica_at_a_time(LOOP)
    def sweep(self):
        self.rounds += 1
        self.started.send()
        self.release.wait()
        return "swept"


def test_two_replicas_rounds_at_once_run_once(database_url):
    with pooled_engine(database_url, "replica-1") as one, \
            pooled_engine(database_url, "replica-2") as two:
        first, second = Replica(one), Replica(two)
        leader = eventlet.spawn(first.sweep)
        first.started.wait()
        second.release.send()  # it would not wait if it ran its round
        assert second.sweep() is None  # the other replica skips the round
        first.release.send()
        assert leader.wait() == "swept"
        assert (first.rounds, second.rounds) == (1, 0)
        assert second.sweep() == "swept"  # the next round: whoever ticks leads
        assert second.rounds == 1


def test_the_lead_moves_to_a_survivor_when_its_leader_dies(database_url, engine):
    with pooled_engine(database_url, "replica-1") as one, \
            pooled_engine(database_url, "replica-2") as two:
        dying, survivor = Replica(one), Replica(two)
        leader = eventlet.spawn(dying.sweep)
        dying.started.wait()
        survivor.release.send()
        assert survivor.sweep() is None
        # The leader's process dies: PostgreSQL ends its session (kill -9 closes the socket).
        # The timeout makes pg_terminate_backend wait until the session is gone, its locks
        # with it, instead of returning as soon as it is signalled.
        with engine.begin() as connection:
            ended = connection.execute(text(
                "SELECT pg_terminate_backend(pid, 10000) FROM pg_locks WHERE locktype = 'advisory' "
                "AND granted AND objsubid = 1 AND classid::bigint = :high "
                "AND objid::bigint = :low"), {"high": (lock_key(LOOP) >> 32) & 0xFFFFFFFF,
                                              "low": lock_key(LOOP) & 0xFFFFFFFF}
            ).scalars().all()
        assert ended == [True]
        assert survivor.sweep() == "swept"
        leader.kill()


def test_leading_is_per_loop(engine):
    with leading(engine, "tests.one") as one, leading(engine, "tests.other") as other:
        assert one is not None and other is not None
