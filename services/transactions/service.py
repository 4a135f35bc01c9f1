"""Transactions: every money movement, through the consensus protocol (pipeline.py).

``submit_many`` takes the movements a gateway process had in flight together and runs
them as one batch (consensus.py); ``submit_batch`` runs a client's batch of transfers.
Each caller waits for the decisions up to ``decision_wait_ms`` and otherwise gets the
pending transactions back, which this service then finishes by itself. A timer finishes
whatever a crash left in flight; the outbox relay (shared/outbox_relay) sends the events
of finished transactions (events.py).
"""
from nameko.exceptions import serialize
from nameko.timer import timer

from services.transactions import batches as batch_records
from services.transactions import events, records, views
from services.transactions.consensus import Consensus
from shared.commands import Movement, TransferBatch
from shared.cursors import DEFAULT_PAGE_SIZE, page_request
from shared.db import Database
from shared.errors import NotFound, ValidationFailed
from shared.ids import parse_id
from shared.leadership import one_replica_at_a_time
from shared.outbox_relay.events import EventRelay
from shared.service import ServiceBase, rpc

RECOVERY_INTERVAL_S = 5
EVENT_RELAY_INTERVAL_S = 0.2
MAX_MOVEMENTS = 1000


class TransactionsService(ServiceBase):
    name = "transactions"
    db = Database(schema="transactions")
    consensus = Consensus()
    event_relay = EventRelay(events.outbox, interval_s=EVENT_RELAY_INTERVAL_S)

    @rpc
    def submit_many(self, movements):
        """Move money for each of ``movements`` (shared.commands.Movement, as dicts), all in
        one batch: per movement, in order, ``{"transaction": <transaction>}`` (decided, or
        still pending) or ``{"error": <serialized shared.errors type>}``."""
        if not isinstance(movements, list) or not 1 <= len(movements) <= MAX_MOVEMENTS:
            raise ValidationFailed("movements: must be a list of 1 to {}".format(
                MAX_MOVEMENTS), errors={"movements": ["1 to {} items".format(MAX_MOVEMENTS)]})
        read, answers = [], [None] * len(movements)
        for index, wire in enumerate(movements):
            try:
                read.append((index, Movement.from_wire(wire)))
            except ValidationFailed as error:
                answers[index] = {"error": serialize(error)}
        if read:
            outcomes = self.consensus.submit([movement for _, movement in read])
            for (index, _), outcome in zip(read, outcomes):
                answers[index] = ({"error": serialize(outcome)}
                                  if isinstance(outcome, Exception)
                                  else {"transaction": views.view(outcome)})
        return answers

    @rpc
    def submit(self, movement):
        """Move money once: the transaction, decided or still pending."""
        [outcome] = self.consensus.submit([Movement.from_wire(movement)])
        if isinstance(outcome, Exception):
            raise outcome
        return views.view(outcome)

    @rpc
    def submit_batch(self, batch):
        """A batch of transfers (shared.commands.TransferBatch, as a dict), applied in
        order: the batch with every item, decided or still pending."""
        row, items = self.consensus.submit_batch(TransferBatch.from_wire(batch))
        return batch_records.view(row, items)

    @rpc
    def get_batch(self, batch_id, viewer_id=None):
        """One batch; ``viewer_id`` None is staff, else it must be the viewer's."""
        batch, items = self.consensus.find_batch(batch_id)
        if batch is None or (viewer_id is not None
                             and not batch_records.visible_to(batch, viewer_id)):
            raise NotFound("No such batch.")
        return batch_records.view(batch, items)

    @rpc
    def get(self, transaction_id, viewer_id=None):
        """One transaction; ``viewer_id`` None is staff, else it must be the viewer's."""
        with self.db.connection() as connection:
            row = records.find(connection, transaction_id)
        if row is None or (viewer_id is not None and not views.visible_to(row, viewer_id)):
            raise NotFound("No such transaction.")
        return views.view(row)

    @rpc
    def list(self, viewer_id, account_id=None, status=None, limit=DEFAULT_PAGE_SIZE,
             cursor=None):
        """Newest first: the transactions of ``account_id`` (whose ownership the gateway
        has checked), or of every account of the viewer."""
        limit, before = page_request(limit, cursor, views.decode_cursor)
        with self.db.connection() as connection:
            rows, more = views.page_for(connection, limit, viewer_id=parse_id(viewer_id),
                                        account_id=parse_id(account_id), status=status,
                                        before=before)
        return {"items": [views.view(row) for row in rows],
                "next_cursor": views.encode_cursor(rows[-1]) if more else None}

    @timer(interval=RECOVERY_INTERVAL_S, eager=True)
    @one_replica_at_a_time("transactions.recovery")
    def recover(self):
        self.consensus.recover()
