"""Databases for the ledger's concurrency tests: a transaction paused, or several gated,
at a chosen statement while they hold the locks they took, so that a test stages a race
exactly; and a wait until another session waits for a lock."""
import threading
import time

import eventlet
from sqlalchemy import text

from shared.db import DatabaseAccess


WAIT_S = 10


def is_lock(statement):
    return "FOR UPDATE" in statement


def reads_postings(statement):
    return "FROM ledger.postings" in statement


class _Watched:
    """A connection that calls ``before(sql)`` and ``after(sql)`` around each statement."""

    def __init__(self, connection, before, after):
        self._connection, self._before, self._after = connection, before, after

    def execute(self, statement, *args, **kwargs):
        sql = str(statement)
        self._before(sql)
        result = self._connection.execute(statement, *args, **kwargs)
        self._after(sql)
        return result

    def __getattr__(self, name):
        return getattr(self._connection, name)


class _WatchedDatabase(DatabaseAccess):
    """Hands each transaction a watched connection while ``watching()`` says so."""

    def __init__(self, engine):
        super().__init__(engine, "ledger")

    def watching(self):
        return True

    def before(self, sql, state):
        pass

    def after(self, sql, state):
        pass

    def transaction(self):
        database = self

        class Watched:
            def __enter__(self):
                self.context = DatabaseAccess.transaction(database)
                connection = self.context.__enter__()
                if not database.watching():
                    return connection
                state = {}
                return _Watched(connection, lambda sql: database.before(sql, state),
                                lambda sql: database.after(sql, state))

            def __exit__(self, *exc_info):
                return self.context.__exit__(*exc_info)

        return Watched()


class GatedDatabase(_WatchedDatabase):
    """Holds each of the first ``parties`` transactions at one statement until all of them
    have made it there: after the first statement ``after`` matches (by default the first
    of all), or before the first ``before`` matches. Later transactions (a batch run
    again) pass freely."""

    def __init__(self, engine, parties, after=None, before=None):
        super().__init__(engine)
        self.barrier = threading.Barrier(parties, timeout=WAIT_S)
        self.ungated = parties
        self.gate_after = after or (None if before else (lambda sql: True))
        self.gate_before = before

    def watching(self):
        if self.ungated <= 0:
            return False
        self.ungated -= 1  # greenthreads: no switch between the test and this
        return True

    def _gate(self, sql, state, matches):
        if matches is not None and matches(sql) and not state.get("passed"):
            state["passed"] = True
            self.barrier.wait()

    def before(self, sql, state):
        self._gate(sql, state, self.gate_before)

    def after(self, sql, state):
        self._gate(sql, state, self.gate_after)


class PausedDatabase(_WatchedDatabase):
    """Pauses its first transaction after the first statement ``after`` matches, holding
    whatever locks it took, until the test calls ``resume()``."""

    def __init__(self, engine, after):
        super().__init__(engine)
        self.matches = after
        self.reached = threading.Event()
        self.resumed = threading.Event()
        self.used = False

    def watching(self):
        first, self.used = not self.used, True
        return first

    def after(self, sql, state):
        if self.matches(sql) and not self.reached.is_set():
            self.reached.set()
            assert self.resumed.wait(WAIT_S), "never resumed"

    def wait_until_paused(self):
        assert self.reached.wait(WAIT_S), "never reached the statement to pause after"

    def resume(self):
        self.resumed.set()


def wait_for_a_lock_wait(engine):
    """Until another session of this database waits for a lock (a racer blocked by the
    lock a paused transaction holds)."""
    deadline = time.monotonic() + WAIT_S
    with engine.connect() as connection:
        while True:
            waiting = connection.execute(text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()")).scalar_one()
            connection.rollback()  # a fresh snapshot of the statistics each time
            if waiting:
                return
            assert time.monotonic() < deadline, "nobody waits for a lock"
            eventlet.sleep(0.02)
