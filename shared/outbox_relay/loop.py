"""``Relay``: the rounds of one outbox in one process (rounds.py), and the loop around
them that a managed thread runs (provider.py)."""
import logging
import threading
import time
from dataclasses import dataclass

import eventlet
from sqlalchemy.exc import SQLAlchemyError

from shared.outbox_relay.metrics import outbox_name, rows_relayed_total
from shared.outbox_relay.rounds import SinkUnavailable, run_round

log = logging.getLogger(__name__)

# A short pause after a round lets the rows of a busy moment share the next one, instead
# of one round trip to the broker per row.
ROUND_GAP_S = 0.05


@dataclass
class LoopSettings:
    """Rows per round, the pause between rounds while idle, the longest backoff."""

    batch_size: int = 1000
    interval_s: float = 0.5
    backoff_max_s: float = 5.0


class Relay:
    """An outbox's relay in one process: ``step()`` is one round, ``run()`` the loop.

    ``settings``: anything with the fields of LoopSettings; ``title`` says whose relay
    speaks in the outage lines."""

    def __init__(self, engine, outbox, sink, settings, title, clock=time.monotonic):
        self.engine = engine
        self.outbox = outbox
        self.sink = sink
        self.settings = settings
        self.title = title
        self.clock = clock
        self._down = None  # (what, since) while something the relay needs is unavailable
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._relayed = rows_relayed_total.labels(outbox_name(outbox))

    def step(self):
        """One round; the number of rows delivered."""
        delivered = run_round(self.engine, self.outbox, self.sink, self.settings.batch_size)
        if delivered:
            self._relayed.inc(delivered)
        return delivered

    def run(self):
        """Relay until ``stop()``: a round at once while rows are waiting, else one every
        ``interval_s`` from the start of the last (sooner when woken). A dead broker or
        database costs the loop a backoff (doubling up to ``backoff_max_s``) and one log
        line per outage; nothing here ever raises, since an exception in a managed thread
        kills the service."""
        backoff_s = self.settings.interval_s
        while not self._stopping.is_set():
            started = self.clock()
            try:
                delivered = self.step()
            except SinkUnavailable as error:
                self._unavailable(error.what, error)
                self.close()
            except SQLAlchemyError as error:
                self._unavailable("PostgreSQL", error)
            except Exception as error:  # noqa: BLE001 - a bug must not kill the service
                self._unavailable("the relay", error, exc_info=True)
                self.close()
            else:
                self._available()
                backoff_s = self.settings.interval_s
                if delivered >= self.settings.batch_size:
                    eventlet.sleep(0)  # more waiting: go on, after letting others run
                else:
                    self._stopping.wait(ROUND_GAP_S)
                    self._wake.wait(max(0.0, started + self.settings.interval_s - self.clock()))
                    self._wake.clear()
                continue
            self._stopping.wait(backoff_s)
            backoff_s = min(backoff_s * 2, self.settings.backoff_max_s)
        self.close()

    def wake(self):
        """Rows were written: relay them now rather than at the next interval."""
        self._wake.set()

    def stop(self):
        self._stopping.set()
        self._wake.set()

    def close(self):
        self.sink.close()

    def _unavailable(self, what, error, exc_info=False):
        if self._down is None or self._down[0] != what:
            log.warning("%s: %s unavailable (%s); publishing resumes when it is back, "
                        "nothing is lost meanwhile", self.title, what,
                        "{}: {}".format(type(error).__name__, error), exc_info=exc_info)
            self._down = (what, self.clock())

    def _available(self):
        if self._down is not None:
            what, since = self._down
            log.info("%s: %s back after %.1f s", self.title, what, self.clock() - since)
            self._down = None
