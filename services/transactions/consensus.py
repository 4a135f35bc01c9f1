"""The consensus protocol as a dependency: it owns the pipeline's database access, its RPC
calls and the greenthreads batches run in.

A caller (an RPC worker) hands over a batch of movements and waits for the decisions up
to the decision wait; the batch runs in a greenthread of its own, so a caller that stops
waiting (202, pending) does not stop the work. Every batch makes its RPC calls under a
correlation id of its own and logs it once, with the request ids of everything it
carries, so any request can be followed into the batch that decided it.
"""
import logging
import time

import eventlet
from nameko.extensions import DependencyProvider

from services.transactions import batches as batch_records
from services.transactions import metrics, records
from services.transactions.dependencies import ValidatorPool
from services.transactions.pipeline import Owners, Pipeline
from services.transactions.settings import TransactionsSettings
from shared.db import DatabaseClient
from shared import tracing, work_counters
from shared.logs import correlated, new_correlation_id
from shared.metrics.scrape import SCRAPED
from shared.rpc import RpcClient
from shared.settings import settings_of
from shared.shared_settings import SharedSettings

log = logging.getLogger(__name__)

WAIT_POLL_S = 0.05


class Consensus(DependencyProvider):
    db = DatabaseClient(schema="transactions")
    rpc = RpcClient()
    pool = ValidatorPool()

    def setup(self):
        # undecided_timeout_s is longer than REDRIVE_AFTER_S (the model says so): recovery
        # must not fail what it should first vote on again.
        section = settings_of(self.container, TransactionsSettings).transactions
        self.vote_deadline_s = section.vote_deadline_s
        self.decision_wait_s = settings_of(self.container, SharedSettings).rpc.decision_wait_s
        self.undecided_timeout_s = section.undecided_timeout_s
        self.owners = Owners()
        self.pending = None

    def start(self):
        # How many are pending, read when Prometheus scrapes (never on a batch's path).
        self.pending = SCRAPED.attach(metrics.pending_source(self.db.engine))

    def stop(self):
        SCRAPED.detach(self.pending)

    def kill(self):
        SCRAPED.detach(self.pending)

    def get_dependency(self, worker_ctx):
        return self

    def submit(self, movements):
        """Record and decide ``movements`` as one batch: per movement, in order, its row as
        it stands at the end of the decision wait, or the error that refused it."""
        started = time.monotonic()
        work = self._work("submit", movements, len(movements))
        work_counters.count(work_counters.CONSENSUS_BATCHES)
        with work_counters.timed_step("prepare"):
            prepared = work.pipeline.prepare(movements)
        decided = {}
        if prepared.created:
            decided = work.run_and_wait(
                lambda: work.pipeline.process(prepared.created, prepared.snapshot),
                self._left(started))
        return [self._settled(outcome, decided, started) for outcome in prepared.outcomes]

    def submit_batch(self, batch):
        """Record and decide a TransferBatch: ``(batch row, item rows)`` at the end of the
        decision wait (a replay of the batch's key answers the batch it made)."""
        started = time.monotonic()
        work = self._work("submit_batch", [batch], len(batch.movements))
        work_counters.count(work_counters.CONSENSUS_BATCHES)
        with work_counters.timed_step("prepare"):
            row, created, items, snapshot = work.pipeline.prepare_batch(batch)
        if created:
            decided = work.run_and_wait(
                lambda: work.pipeline.process(items, snapshot, atomic=row.atomic),
                self._left(started))
            items = [decided.get(item.id, item) for item in items]
        else:
            items = [self._settled(item, {}, started) for item in items]
        return row, items

    def recover(self):
        work = self._work("recover", (), 0)
        with correlated(work.correlation_id):
            return work.pipeline.recover(self.undecided_timeout_s)

    def find_batch(self, batch_id):
        with self.db.access().connection() as connection:
            batch = batch_records.find(connection, batch_id)
            return batch, batch_records.items_of(connection, batch.id) if batch else []

    # --- waiting ---------------------------------------------------------------------------

    def _left(self, started):
        return max(0.0, self.decision_wait_s - (time.monotonic() - started))

    def _settled(self, outcome, decided, started):
        """The row as decided, or (a retry of a request still being decided elsewhere) as it
        stands once decided or the wait is over. Errors pass through."""
        if isinstance(outcome, Exception):
            return outcome
        row = decided.get(outcome.id, outcome)
        with eventlet.Timeout(self._left(started), False):
            while row.status == records.PENDING:
                eventlet.sleep(WAIT_POLL_S)
                with self.db.access().connection() as connection:
                    row = records.find(connection, row.id)
        return row

    def _work(self, name, carried, size):
        correlation_id = new_correlation_id()
        return _Work(self, name, correlation_id, Pipeline(
            self.db.access(), self.rpc.detached(name, correlation_id), self.pool,
            self.vote_deadline_s, self.owners), carried, size)


class _Work:
    """One batch's run: its pipeline, its correlation id, its log line."""

    def __init__(self, consensus, name, correlation_id, pipeline, carried, size):
        self.consensus = consensus
        self.name = name
        self.correlation_id = correlation_id
        self.pipeline = pipeline
        self.request_ids = sorted({item.request_id for item in carried if item.request_id})
        self.traceparents = [getattr(item, "traceparent", None) for item in carried]
        self.size = size

    def run_and_wait(self, process, wait_s):
        """Run ``process`` in its own greenthread; its result, or {} if it is still running
        when ``wait_s`` is over (it carries on, and recovery backs it up)."""
        thread = self.consensus.container.spawn_managed_thread(
            lambda: self._logged(process), identifier="consensus-" + self.name)
        with eventlet.Timeout(wait_s, False):
            return thread.wait() or {}
        return {}

    def _logged(self, process):
        started = time.monotonic()
        # The batch's calls, events and lines continue its requests' trace (one request)
        # or name every trace it carries.
        trace_ids = tracing.trace_ids(self.traceparents)
        with correlated(self.correlation_id), tracing.batch_span(
                self.traceparents, "transactions " + self.name):
            try:
                rows = process()
            except Exception:  # noqa: BLE001 - they stay pending; recovery finishes them
                log.exception("%s: a batch of %d transactions failed", self.name, self.size,
                              extra={"fields": {"request_ids": self.request_ids,
                                                "trace_ids": trace_ids}})
                return {}
            counts = {}
            for row in rows.values():
                counts[row.status] = counts.get(row.status, 0) + 1
            log.info("%s: %d transactions decided in %.1f ms", self.name, self.size,
                     (time.monotonic() - started) * 1000, extra={"fields": {
                         "counts": counts, "request_ids": self.request_ids,
                         "trace_ids": trace_ids}})
        return rows
