"""The money desk: every money movement a gateway process has in flight goes to the
transactions service together, in one ``submit_many`` call (shared/coalesce.py), and
each request gets its own answer back. One RPC, one vote round, one posting for what
would otherwise cost each request all of them.

The desk's calls carry a correlation id of their own per batch (every service logs it),
and the transactions service logs, per batch, the request ids it carried. How long the
requests wait for their batch to leave, and how long its submit takes, are counted for
`make bench` (shared/work_counters.py).
"""
import logging

from nameko.exceptions import deserialize
from nameko.extensions import DependencyProvider

from gateway.settings import GatewaySettings
from shared import work_counters
from shared.coalesce import Coalescer
from shared.logs import new_correlation_id
from shared.rpc import RpcClient
from shared.settings import settings_of
from shared.shared_settings import SharedSettings

log = logging.getLogger(__name__)


class MoneyDesk(DependencyProvider):
    rpc = RpcClient()

    def setup(self):
        rpc = settings_of(self.container, SharedSettings).rpc
        gateway = settings_of(self.container, GatewaySettings).gateway
        # The transactions service answers within the decision wait; allow for the queue.
        self.timeout_s = rpc.decision_wait_s + rpc.timeout_s
        self.coalescer = Coalescer(
            self._submit_many, gateway.coalesce_max_batch, gateway.coalesce_lanes,
            self.container.spawn_managed_thread, "money desk", observe=_count_batch)

    def start(self):
        self.coalescer.start()

    def get_dependency(self, worker_ctx):
        return self

    def submit(self, movement):
        """The transaction of ``movement`` (shared.commands.Movement), decided or pending;
        raises the error that refused it."""
        return self.coalescer.call(movement)

    def _submit_many(self, movements):
        transactions = self.rpc.detached("submit_many", new_correlation_id()).transactions
        answers = transactions.submit_many([movement.to_wire() for movement in movements],
                                           timeout_s=self.timeout_s)
        return [deserialize(answer["error"]) if "error" in answer else answer["transaction"]
                for answer in answers]


def _count_batch(size, queued_s, submit_s):
    work_counters.count(work_counters.DESK_REQUESTS, size)
    work_counters.count(work_counters.DESK_BATCHES)
    work_counters.count(work_counters.DESK_QUEUED_MS, queued_s * 1000)
    work_counters.count(work_counters.DESK_SUBMIT_MS, submit_s * 1000)
