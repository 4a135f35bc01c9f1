"""The relay of every transactional outbox: a loop in a thread of its own that reads a
round of unsent rows, hands them to a sink and marks sent what the sink delivered.

- rounds.py: one round (the claim, the read, the mark) and what a sink is;
- loop.py: ``Relay``, the rounds of one outbox in one process, and the loop around them
  (wake-ups, backoff, one log line per outage);
- provider.py: ``OutboxRelay``, the Nameko dependency that runs the loop in a managed
  thread (why not a ``@timer``: its docstring);
- events.py: the AMQP sink, a service's outbox of Nameko events (shared/event_outbox.py),
  and its provider ``EventRelay``.

The other sink is the ledger's Kafka mirror (services/ledger/mirror_relay/), whose
checkpoints, loss detection and replay are its own.

Delivery is at least once: a crash between a sink's send and the mark sends rows twice,
never zero times, and consumers deduplicate by id.
"""
