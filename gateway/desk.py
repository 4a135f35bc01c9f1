"""The money desk: every money movement a gateway process has in flight goes to the
transactions service together, in one ``submit_many`` call (shared/coalesce.py), and
each request gets its own answer back. One RPC, one vote round, one posting for what
would otherwise cost each request all of them.

The desk also claims the requests' Idempotency-Keys, all of a batch's in one
transaction just before the batch leaves (gateway/idempotency.py ``Claim``): a request
whose key was answered before replays that answer, one whose key is in flight or was
used for another request is refused, and neither goes to the transactions service. At
the guard each request would claim its key on its own, since requests arrive there one
or two at a time; here they wait for the batch in flight anyway.

The desk's calls carry a correlation id of their own per batch (every service logs it),
and the transactions service logs, per batch, the request ids it carried. How long the
requests wait for their batch to leave, how long its claim and its submit take, are
counted for `make bench` (shared/work_counters.py).
"""
import logging
import time

from nameko.exceptions import deserialize
from nameko.extensions import DependencyProvider

from gateway import idempotency
from gateway.settings import GatewaySettings
from shared import work_counters
from shared.coalesce import Coalescer
from shared.db import DatabaseClient
from shared.logs import new_correlation_id
from shared.rpc import RpcClient
from shared.settings import settings_of
from shared.shared_settings import SharedSettings

log = logging.getLogger(__name__)


class MoneyDesk(DependencyProvider):
    rpc = RpcClient()
    db = DatabaseClient(schema="gateway")

    def setup(self):
        rpc = settings_of(self.container, SharedSettings).rpc
        settings = settings_of(self.container, GatewaySettings)
        # The transactions service answers within the decision wait; allow for the queue.
        self.timeout_s = rpc.decision_wait_s + rpc.timeout_s
        self.keys = idempotency.IdempotencyStore.configured(self.db.access(),
                                                            settings.idempotency)
        self.coalescer = Coalescer(
            self._submit_many, settings.gateway.coalesce_max_batch,
            settings.gateway.coalesce_lanes, self.container.spawn_managed_thread,
            "money desk", observe=_count_batch)

    def start(self):
        self.coalescer.start()

    def get_dependency(self, worker_ctx):
        return self

    def submit(self, movement, claim=None):
        """The transaction of ``movement`` (shared.commands.Movement), decided or pending;
        raises the error that refused it. ``claim`` (gateway.idempotency.Claim): the
        request's key, claimed here with the batch's unless it is held already; raises
        ``idempotency.Replay`` or ``idempotency.ClaimRefused`` instead of submitting."""
        return self.coalescer.call((movement, claim))

    def _submit_many(self, requests):
        return claim_then_submit(requests, self._claim_many, self._submit_movements)

    def _claim_many(self, begins):
        started = time.monotonic()
        try:
            return self.keys.begin_many(begins)
        finally:
            work_counters.count_stage("idempotency_claim", len(begins),
                                      time.monotonic() - started)

    def _submit_movements(self, movements):
        transactions = self.rpc.detached("submit_many", new_correlation_id()).transactions
        with work_counters.timed(work_counters.DESK_SUBMIT_MS):
            answers = transactions.submit_many([movement.to_wire() for movement in movements],
                                               timeout_s=self.timeout_s)
        return [deserialize(answer["error"]) if "error" in answer else answer["transaction"]
                for answer in answers]


def claim_then_submit(requests, claim_many, submit_many):
    """Per ``(movement, claim)`` of ``requests``, in order, the answer of ``submit_many``
    for its movement, or the exception to raise to its caller. The keys not held yet
    are claimed first, all in one ``claim_many``; a request whose key is not its to hold
    is answered ``Replay`` or ``ClaimRefused``, and its movement never leaves. A claim or
    a submit that fails is the answer of the requests it was for, and only theirs."""
    answers = [None] * len(requests)
    wanted = [index for index, (_, claim) in enumerate(requests)
              if claim is not None and claim.lease is None]
    if wanted:
        try:
            claimed, failed = claim_many([requests[index][1].begin for index in wanted]), False
        except Exception as error:  # noqa: BLE001 - the answer of every request claimed
            claimed, failed = [error] * len(wanted), True
        for index, result in zip(wanted, claimed):
            if isinstance(result, idempotency.Lease):
                requests[index][1].lease = result
            elif isinstance(result, idempotency.StoredResponse):
                answers[index] = idempotency.Replay(result)
            elif failed:  # no claim was made (the database away): the request's error
                answers[index] = result
            else:  # the key's own refusal: in flight (409), or another request's (422)
                answers[index] = idempotency.ClaimRefused(result)
    leaving = [index for index, answer in enumerate(answers) if answer is None]
    if leaving:
        try:
            results = submit_many([requests[index][0] for index in leaving])
        except Exception as error:  # noqa: BLE001 - the answer of every request submitted
            results = [error] * len(leaving)
        for index, result in zip(leaving, results):
            answers[index] = result
    return answers


def _count_batch(size, queued_s, run_s):
    # The batch's run is its claim and its submit, each timed on its own above.
    work_counters.count(work_counters.DESK_REQUESTS, size)
    work_counters.count(work_counters.DESK_BATCHES)
    work_counters.count(work_counters.DESK_QUEUED_MS, queued_s * 1000)
