"""Is the Kafka mirror catching up, caught up, or stalled? `paysys reconcile` watches the
relay publish the outbox rows of its snapshot before it reads the topic.

The relay publishes the outbox in order, so the count of the snapshot's rows still
unpublished says how far behind the mirror is. While that count moves (down as the relay
publishes; up when a replay after a broker loss unpublishes rows again) the mirror is
catching up, and the watch goes on up to its bound; a count that stays put for the stall
bound means the relay stopped (Kafka away, the ledger down, the relay stuck), which no
amount of waiting mends.
"""
import time
from dataclasses import dataclass

CAUGHT_UP, CATCHING_UP, STALLED = "caught up", "catching up", "stalled"
PROGRESS_EVERY_S = 2.0


@dataclass(frozen=True)
class Watch:
    """What the watch saw: ``state`` (CAUGHT_UP, CATCHING_UP when the bound ran out while
    the relay advanced, STALLED), the unpublished rows at the start and at the end, and
    the seconds it took."""

    state: str
    unpublished_at_start: int
    unpublished: int
    waited_s: float

    def as_dict(self):
        return {"state": self.state, "unpublished_at_start": self.unpublished_at_start,
                "unpublished": self.unpublished, "waited_s": round(self.waited_s, 1)}


def watch(count_unpublished, wait_s, stall_s, say=lambda line: None, poll_s=0.2,
          clock=time.monotonic, sleep=time.sleep):
    """Watch ``count_unpublished()`` until it is 0, stays put for ``stall_s``, or
    ``wait_s`` has passed; a Watch. ``say`` gets a progress line every few seconds.
    When the bound runs out the state is CATCHING_UP if the count moved while watched,
    else STALLED."""
    started = clock()
    first = last = count_unpublished()
    last_change = last_said = started
    if first:
        say("The relay has {} postings of the snapshot still to publish to Kafka; waiting up "
            "to {:g} s while it advances (stalled after {:g} s without progress)".format(
                first, wait_s, stall_s))
    while last:
        now = clock()
        if now - last_change >= stall_s:
            return Watch(STALLED, first, last, now - started)
        if now - started >= wait_s:
            # Catching up only on evidence: a count that never moved while watched is a
            # relay nobody saw advance.
            return Watch(CATCHING_UP if last_change > started else STALLED, first, last,
                         now - started)
        sleep(min(poll_s, max(0.0, started + wait_s - now)))
        count = count_unpublished()
        now = clock()
        if count != last:
            last, last_change = count, now
        if last and now - last_said >= PROGRESS_EVERY_S:
            say("  {:>5.0f} s: {} still to publish (at the start: {})".format(
                now - started, last, first))
            last_said = now
    return Watch(CAUGHT_UP, first, 0, clock() - started)
