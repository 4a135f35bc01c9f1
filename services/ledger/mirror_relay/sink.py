"""``MirrorSink``: the Kafka side of a relay round of the ledger's outbox.

Before the read, under the outbox's claim: connect if need be and make sure the topic is
there (every round: tansu, restarted, acknowledges writes to a topic it does not have and
keeps them nowhere), and every ``check_interval_s`` (and after every connection) look
for a loss (loss.py). A check that replays reconnects (new clients, a fresh view of the
topic) and checks again, so the same round publishes the replay. After the send, in the
stamp's transaction: the round's checkpoints, unless its acknowledgements show a log that
started again, which replays instead."""
import time

from kafka.errors import KafkaError

from services.ledger.mirror_relay import checkpoints
from services.ledger.mirror_relay.clients import KafkaClients, KafkaUnavailable
from services.ledger.mirror_relay.loss import OFFSET_WENT_BACK, find_loss
from services.ledger.mirror_relay.replay import replay
from shared.outbox_relay.rounds import Delivery, Sink


class MirrorSink(Sink):

    def __init__(self, settings, clock=time.monotonic):
        self.settings = settings
        self.clock = clock
        self.clients = KafkaClients(settings)
        self.replay_rules = []  # the rule behind each replay of this relay, oldest first
        self._next_check = 0.0
        self._reconnect = False

    @property
    def replays(self):
        """How many times this relay found the mirror short."""
        return len(self.replay_rules)

    @property
    def stop_timeout_s(self):
        return self.settings.delivery_timeout_ms / 1000 * 2 + 2

    def prepare(self, connection):
        try:
            for _ in range(2):
                if self._reconnect:
                    self.close()
                    self._reconnect = False
                if self.clients.producer is None:
                    self.clients.connect()
                    self._next_check = 0.0  # whatever happened while away: check first
                if (self.clock() < self._next_check
                        and self.settings.topic in self.clients.topics()):
                    return True
                with connection.begin():
                    replayed = self.check(connection)
                self._next_check = self.clock() + self.settings.check_interval_s
                if not replayed:
                    return True
            return False
        except KafkaError as error:
            raise KafkaUnavailable("{}: {}".format(type(error).__name__, error)) from error

    def check(self, connection):
        """Replay if the topic lost messages; True if it did."""
        created = self.clients.ensure_topic()
        found = find_loss(connection, self.clients.admin, self.settings.topic, created)
        if found is not None:
            self.replay(connection, *found)
        return found is not None

    def send(self, rows):
        acks, failure = self.clients.send(rows)
        if failure is not None:
            failure = KafkaUnavailable("{} of {} messages acknowledged: {}".format(
                len(acks), len(rows), failure))
        return Delivery(len(acks), acks, failure)

    def record(self, connection, rows, acks):
        reset = checkpoints.log_restarted(connection, self.settings.topic, acks)
        if reset:
            # Acknowledged into a log that started again: everything goes again, these
            # rows included.
            self.replay(connection, OFFSET_WENT_BACK, reset)
            return False
        checkpoints.record_round(connection, self.settings.topic, acks)
        return True

    def replay(self, connection, rule, detail):
        """Everything published goes again, in outbox order, through new clients (the
        old producer's view of the topic is from before the loss): the next round
        reconnects, after this transaction commits."""
        replay(connection, self.settings.topic, rule, detail)
        self.replay_rules.append(rule)
        self._reconnect = True

    def close(self):
        self.clients.close()
