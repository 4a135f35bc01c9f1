"""Many concurrent calls made as one: what lets requests in flight share a round trip.

Callers ``call(item)`` and wait; a few lanes each take whatever is queued (up to
``max_batch``) and run it through ``run_many(items)`` in one go, which answers one result
per item, in order (an ``Exception`` instance is that caller's error). Nothing waits for
a batch to fill: an idle process runs batches of one at the latency of one; under load
the queue fills while the lanes are busy, so the next batch is larger and its round
trip, commit or RPC is shared by all of it — the way databases group their commits.

    coalescer = Coalescer(run_many, max_batch=200, lanes=2, spawn=container.spawn_managed_thread)
    coalescer.start()
    result = coalescer.call(item)

``observe(size, queued_s, run_s)``, if given, hears of every batch: how many items it
took, how long they waited in the queue for it (summed over them) and how long
``run_many`` took.
"""
import logging
import time

from eventlet.event import Event
from eventlet.queue import Empty, LightQueue

log = logging.getLogger(__name__)


class Coalescer:
    def __init__(self, run_many, max_batch, lanes, spawn, name="coalescer", observe=None):
        if max_batch < 1 or lanes < 1:
            raise ValueError("max_batch and lanes must be at least 1")
        self.run_many = run_many
        self.max_batch = max_batch
        self.lanes = lanes
        self.spawn = spawn
        self.name = name
        self.observe = observe
        self.queue = LightQueue()

    def start(self):
        for _ in range(self.lanes):
            self.spawn(self._lane)

    def call(self, item):
        """``run_many``'s result for ``item``; raises the error it answered for it."""
        done = Event()
        self.queue.put((item, done, time.monotonic()))
        result = done.wait()
        if isinstance(result, BaseException):
            raise result
        return result

    def _lane(self):
        while True:
            batch = [self.queue.get()]
            while len(batch) < self.max_batch:
                try:
                    batch.append(self.queue.get_nowait())
                except Empty:
                    break
            items = [item for item, _, _ in batch]
            started = time.monotonic()
            try:
                results = self.run_many(items)
                if len(results) != len(items):
                    raise RuntimeError("{} answered {} results for {} items".format(
                        self.name, len(results), len(items)))
            except Exception as error:  # noqa: BLE001 - every caller of the batch gets it
                results = [error] * len(items)
            if self.observe is not None:
                self.observe(len(items), sum(started - queued for _, _, queued in batch),
                             time.monotonic() - started)
            for (_, done, _), result in zip(batch, results):
                done.send(result)
