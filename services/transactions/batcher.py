"""Batching of concurrent transactions: one vote round and one posting for many.

Every money-moving request queues its transaction here; a few lanes each take
whatever is queued (up to ``max_batch``) and run it through the pipeline as one
batch. Nothing waits for a batch to fill: an idle system runs batches of one
at the latency of one, and under load the queue fills while a lane is busy,
so the next batch is larger and the vote and posting round trips, database
commits and messages are shared by many transfers — the way the fastest
ledgers reach their throughput.
"""
import logging
from dataclasses import dataclass, field

from eventlet.event import Event
from eventlet.queue import Empty, LightQueue
from nameko.extensions import DependencyProvider

log = logging.getLogger(__name__)


@dataclass
class Job:
    pipeline: object
    transaction_id: str
    accounts: dict
    done: Event = field(default_factory=Event)


class Batcher(DependencyProvider):
    def setup(self):
        section = self.container.config.get("transactions", {})
        self.max_batch = int(section.get("max_batch", 100))
        self.lanes = int(section.get("batch_lanes", 2))
        self.queue = LightQueue()

    def start(self):
        for _ in range(self.lanes):
            self.container.spawn_managed_thread(self._lane)

    def get_dependency(self, worker_ctx):
        return self

    def submit(self, pipeline, transaction_id, accounts=None):
        """Queue one transaction; the ``Event`` that gets its row once processed."""
        job = Job(pipeline, transaction_id, accounts)
        self.queue.put(job)
        return job.done

    def _lane(self):
        while True:
            jobs = [self.queue.get()]
            while len(jobs) < self.max_batch:
                try:
                    jobs.append(self.queue.get_nowait())
                except Empty:
                    break
            # Any job's pipeline will do: they share the process's database and RPC.
            pipeline = jobs[0].pipeline
            try:
                rows = pipeline.process_many([(job.transaction_id, job.accounts)
                                              for job in jobs])
            except Exception:  # noqa: BLE001 - they stay pending; recovery finishes them
                log.exception("a batch of %d transactions failed", len(jobs))
                rows = {}
            for job in jobs:
                job.done.send(rows.get(job.transaction_id))
