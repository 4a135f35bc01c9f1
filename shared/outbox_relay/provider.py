"""``OutboxRelay``: the Nameko dependency that runs an outbox's Relay (loop.py) in the
service's process."""
import eventlet
from nameko.extensions import DependencyProvider

from shared.db import make_engine
from shared.metrics.scrape import SCRAPED
from shared.outbox_relay.metrics import backlog_source
from shared.settings import settings_of
from shared.shared_settings import SharedSettings

# A relay reads its unsent rows through the outbox's partial index, whose entries for
# rows already sent stay until VACUUM. A plain index scan marks them dead as it passes
# (later rounds skip them); a bitmap scan, which the planner may prefer, marks nothing
# and visits every row ever sent, each round, until the next vacuum (tests, and systems
# with autovacuum off or behind, see that round grow by the thousand rows). The relay's
# own sessions run nothing else, so they simply go without bitmap scans.
RELAY_SESSION = {"enable_bitmapscan": "off"}


class OutboxRelay(DependencyProvider):
    """Runs a relay inside a service's process; subclasses say which (``make_relay``).

    Why a DependencyProvider with a managed thread rather than a ``@timer``: a timer
    tick is a worker, so a round waiting on a dead broker (seconds) would hold one of the
    ``max_workers`` slots the RPCs need, and a tick that raises is logged as a failed
    worker each time; the managed thread holds no worker slot, keeps its broker
    connection and its outage state between rounds, can be woken for low latency, and
    stops with the container. It has its own database connection, so it never waits for
    (or takes) a worker's. Workers see the Relay (its ``wake()``)."""

    def __init__(self):
        self.relay = None
        self.engine = None
        self.thread = None
        self.backlog = None

    def make_relay(self, engine, container):
        """The Relay this provider runs, on ``engine`` (the relay's own), with the settings
        of ``container``."""
        raise NotImplementedError

    def setup(self):
        database = settings_of(self.container, SharedSettings).database
        self.engine = make_engine(database, 1, "paysys-{}-relay".format(
            self.container.service_name), session_settings=RELAY_SESSION)
        self.relay = self.make_relay(self.engine, self.container)

    def start(self):
        # Its backlog, read on the relay's own engine when Prometheus scrapes.
        self.backlog = SCRAPED.attach(backlog_source(self.engine, self.relay.outbox))
        self.thread = self.container.spawn_managed_thread(
            self.relay.run, identifier="{}.outbox_relay".format(self.container.service_name))

    def stop(self):
        SCRAPED.detach(self.backlog)
        self.relay.stop()
        if self.thread is not None:
            # A round in progress ends within the sink's time.
            with eventlet.Timeout(self.relay.sink.stop_timeout_s, False):
                self.thread.wait()
            self.thread.kill()
        self.relay.close()
        self.engine.dispose()

    def kill(self):
        SCRAPED.detach(self.backlog)
        if self.relay is not None:
            self.relay.stop()
        if self.thread is not None:
            self.thread.kill()
        if self.engine is not None:
            self.engine.dispose()

    def get_dependency(self, worker_ctx):
        return self.relay
