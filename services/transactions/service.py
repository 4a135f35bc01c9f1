"""Transactions: every money movement, through the consensus protocol (pipeline.py).

``submit`` records the request and queues it for the next batch (batcher.py);
the caller waits for the decision up to ``decision_wait_ms`` and otherwise gets
the pending transaction back, which this service then finishes by itself. A
timer finishes whatever a crash left in flight; another relays the events of
finished transactions from the outbox (events.py).
"""
import eventlet
from nameko.dependency_providers import Config
from nameko.events import EventDispatcher
from nameko.timer import timer

from services.transactions import events, records
from services.transactions.batcher import Batcher
from services.transactions.dependencies import ValidatorPool
from services.transactions.pipeline import Pipeline
from shared.cursors import DEFAULT_PAGE_SIZE, page_request
from shared.db import Database
from shared.errors import NotFound
from shared.ids import parse_id
from shared.rpc import ServiceRpc
from shared.service import ServiceBase, rpc

RECOVERY_INTERVAL_S = 5
EVENT_RELAY_INTERVAL_S = 0.5
WAIT_POLL_S = 0.05


class TransactionsService(ServiceBase):
    name = "transactions"
    db = Database(schema="transactions")
    services = ServiceRpc("transactions")  # not `rpc`: that name is the entrypoint decorator
    pool = ValidatorPool()
    batcher = Batcher()
    config = Config()
    dispatch = EventDispatcher()

    @rpc
    def submit(self, kind, initiator_id, body, idempotency_key, acting_as_admin=False):
        """Move money: the transaction, decided (completed or failed) or still pending."""
        pipeline = self._pipeline()
        row, created, accounts = pipeline.prepare(kind, initiator_id, body, idempotency_key,
                                                  acting_as_admin)
        wait_s = int(self.config["transactions"]["decision_wait_ms"]) / 1000
        if created:
            done = self.batcher.submit(pipeline, row.id, accounts)
            with eventlet.Timeout(wait_s, False):  # stops the waiting, not the work
                processed = done.wait()
                if processed is not None:
                    return records.view(processed)
        else:
            # A retry of a request already being processed: wait for that one to finish.
            with eventlet.Timeout(wait_s, False):
                while row.status == "pending":
                    eventlet.sleep(WAIT_POLL_S)
                    row = self._find(row.id)
        return records.view(self._find(row.id))

    @rpc
    def get(self, transaction_id, viewer_id=None):
        """One transaction; ``viewer_id`` None is staff, else it must be the viewer's."""
        row = self._find(transaction_id)
        if row is None or (viewer_id is not None and not records.visible_to(row, viewer_id)):
            raise NotFound("No such transaction.")
        return records.view(row)

    @rpc
    def list(self, viewer_id, account_id=None, status=None, limit=DEFAULT_PAGE_SIZE,
             cursor=None):
        """Newest first: the transactions of ``account_id`` (whose ownership the gateway
        has checked), or of every account of the viewer."""
        limit, before = page_request(limit, cursor, records.decode_cursor)
        with self.db.connection() as connection:
            rows, more = records.page_for(connection, limit, viewer_id=parse_id(viewer_id),
                                          account_id=parse_id(account_id), status=status,
                                          before=before)
        return {"items": [records.view(row) for row in rows],
                "next_cursor": records.encode_cursor(rows[-1]) if more else None}

    @timer(interval=RECOVERY_INTERVAL_S, eager=True)
    def recover(self):
        self._pipeline().recover(int(self.config["transactions"]["undecided_timeout_s"]))

    @timer(interval=EVENT_RELAY_INTERVAL_S)
    def relay_events(self):
        events.relay(self.db, self.dispatch)

    def _pipeline(self):
        deadline_s = int(self.config["transactions"]["vote_deadline_ms"]) / 1000
        return Pipeline(self.db, self.services, self.pool, deadline_s)

    def _find(self, transaction_id):
        with self.db.connection() as connection:
            return records.find(connection, transaction_id)

