"""The coalescer: calls in flight together share one run, each caller gets its own answer,
and nothing waits for a batch to fill."""
import eventlet
import pytest

from shared.coalesce import Coalescer


class SlowRun:
    """Records each batch; takes a while, as a round trip does."""

    def __init__(self, fail=False):
        self.batches = []
        self.fail = fail

    def __call__(self, items):
        self.batches.append(list(items))
        eventlet.sleep(0.05)
        if self.fail:
            raise RuntimeError("the database fell over")
        return [ValueError(item) if item.startswith("bad") else "answer to " + item
                for item in items]


@pytest.fixture
def make():
    threads = []

    def make(run, max_batch=8, lanes=1):
        coalescer = Coalescer(run, max_batch, lanes, lambda lane: threads.append(
            eventlet.spawn(lane)), "test")
        coalescer.start()
        return coalescer

    yield make
    for thread in threads:
        thread.kill()


def call_all(coalescer, items):
    threads = [eventlet.spawn(coalescer.call, item) for item in items]
    results = []
    for thread in threads:
        try:
            results.append(thread.wait())
        except Exception as error:  # noqa: BLE001 - the test looks at what each got
            results.append(error)
    return results


def test_an_idle_caller_runs_alone_at_once(make):
    run = SlowRun()
    assert make(run).call("t1") == "answer to t1"
    assert run.batches == [["t1"]]


def test_calls_arriving_while_a_batch_runs_share_the_next_one(make):
    run = SlowRun()
    coalescer = make(run)
    first = eventlet.spawn(coalescer.call, "first")
    eventlet.sleep(0.01)  # the lane has taken it alone and is running it
    results = call_all(coalescer, ["t{}".format(i) for i in range(20)])
    assert first.wait() == "answer to first"
    assert results == ["answer to t{}".format(i) for i in range(20)]
    # Those that queued meanwhile go together, max_batch at a time, in arrival order.
    assert [len(batch) for batch in run.batches] == [1, 8, 8, 4]
    assert [item for batch in run.batches[1:] for item in batch] == [
        "t{}".format(i) for i in range(20)]


def test_each_caller_gets_its_own_error(make):
    results = call_all(make(SlowRun()), ["good", "bad one", "fine"])
    assert results[0] == "answer to good" and results[2] == "answer to fine"
    assert isinstance(results[1], ValueError) and str(results[1]) == "bad one"


def test_a_failed_batch_fails_its_callers_and_the_lane_goes_on(make):
    run = SlowRun(fail=True)
    coalescer = make(run)
    failed = call_all(coalescer, ["a", "b"])
    assert all(isinstance(result, RuntimeError) for result in failed)
    run.fail = False
    assert coalescer.call("c") == "answer to c"


def test_lanes_run_batches_side_by_side(make):
    run = SlowRun()
    coalescer = make(run, max_batch=4, lanes=2)
    started = eventlet.spawn(call_all, coalescer, ["t{}".format(i) for i in range(10)])
    eventlet.sleep(0.02)  # both lanes have taken a batch and are running them together
    assert [len(batch) for batch in run.batches] == [4, 4]
    assert started.wait() == ["answer to t{}".format(i) for i in range(10)]
    assert [len(batch) for batch in run.batches] == [4, 4, 2]


def test_an_answer_of_the_wrong_length_fails_every_caller(make):
    coalescer = make(lambda items: ["only one"])
    results = call_all(coalescer, ["a", "b"])
    assert all(isinstance(result, RuntimeError) for result in results)


def test_each_batch_is_observed_with_its_size_wait_and_run_time():
    heard, threads = [], []
    coalescer = Coalescer(SlowRun(), 8, 1, lambda lane: threads.append(eventlet.spawn(lane)),
                          "test", observe=lambda *batch: heard.append(batch))
    coalescer.start()
    try:
        first = eventlet.spawn(coalescer.call, "first")
        eventlet.sleep(0.01)  # the lane runs "first" alone; the next three queue behind it
        call_all(coalescer, ["a", "b", "c"])
        first.wait()
    finally:
        for thread in threads:
            thread.kill()
    [(alone, alone_queued_s, alone_run_s), (size, queued_s, run_s)] = heard
    assert (alone, size) == (1, 3)
    assert alone_run_s >= 0.05 and run_s >= 0.05
    # The three waited for the first batch to finish (at least its last 0.04 s each,
    # summed); the first, which found the lane idle, waited less than any of them.
    assert queued_s >= 3 * 0.03 and alone_queued_s < queued_s / 3
