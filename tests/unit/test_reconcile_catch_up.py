"""How `paysys reconcile` tells a Kafka mirror catching up from a stalled one
(paysys/catch_up.py): the count of the snapshot's unpublished outbox rows, watched on a
clock the test moves."""
from paysys.catch_up import CATCHING_UP, CAUGHT_UP, STALLED, watch


class Relay:
    """Unpublished rows as the watch polls them, one figure per poll (the last repeats);
    a clock that a poll moves on by ``step_s``."""

    def __init__(self, counts, step_s=1.0):
        self.counts = list(counts)
        self.now = 0.0
        self.step_s = step_s
        self.said = []

    def count(self):
        return self.counts.pop(0) if len(self.counts) > 1 else self.counts[0]

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.now += self.step_s


def watched(relay, wait_s, stall_s):
    return watch(relay.count, wait_s, stall_s, say=relay.said.append, poll_s=1,
                 clock=relay.clock, sleep=relay.sleep)


def test_nothing_to_publish_is_caught_up_at_once_and_silent():
    relay = Relay([0])
    seen = watched(relay, wait_s=60, stall_s=15)
    assert (seen.state, seen.unpublished_at_start, seen.unpublished) == (CAUGHT_UP, 0, 0)
    assert relay.now == 0 and relay.said == []


def test_a_relay_that_advances_is_waited_for_until_it_has_published_everything():
    relay = Relay([500, 400, 300, 300, 200, 100, 0])
    seen = watched(relay, wait_s=60, stall_s=15)
    assert (seen.state, seen.unpublished_at_start, seen.unpublished) == (CAUGHT_UP, 500, 0)
    assert seen.waited_s == 6
    assert "500 postings of the snapshot still to publish" in relay.said[0]
    assert any("still to publish (at the start: 500)" in line for line in relay.said[1:])


def test_a_relay_still_advancing_when_the_bound_runs_out_is_catching_up():
    relay = Relay(range(1000, 0, -10))
    seen = watched(relay, wait_s=5, stall_s=15)
    assert seen.state == CATCHING_UP and seen.waited_s == 5
    assert 0 < seen.unpublished < seen.unpublished_at_start == 1000


def test_a_relay_that_stops_advancing_is_stalled_after_the_stall_bound():
    relay = Relay([50, 40, 30])  # then 30 for ever
    seen = watched(relay, wait_s=60, stall_s=4)
    assert seen.state == STALLED and seen.unpublished == 30
    assert seen.waited_s == 2 + 4  # the last change, then the stall bound


def test_a_replay_that_unpublishes_rows_again_counts_as_advancing():
    relay = Relay([10, 10, 10, 900, 800, 700, 0])  # the relay found a loss and replays
    seen = watched(relay, wait_s=60, stall_s=4)
    assert seen.state == CAUGHT_UP


def test_a_relay_never_seen_to_move_is_stalled_even_when_the_bound_comes_first():
    relay = Relay([7])
    seen = watched(relay, wait_s=3, stall_s=15)
    assert seen.state == STALLED and seen.unpublished == 7
