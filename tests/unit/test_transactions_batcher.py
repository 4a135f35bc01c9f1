"""The batcher: concurrent transactions go through the pipeline together, none is lost."""
from unittest.mock import Mock

import eventlet
import pytest

from services.transactions.batcher import Batcher


class SlowPipeline:
    """Records each batch; takes a while, as a vote round and a posting do."""

    def __init__(self, fail=False):
        self.batches = []
        self.fail = fail

    def process_many(self, jobs):
        self.batches.append([transaction_id for transaction_id, _ in jobs])
        eventlet.sleep(0.05)
        if self.fail:
            raise RuntimeError("the ledger fell over")
        return {transaction_id: "row of " + transaction_id for transaction_id, _ in jobs}


@pytest.fixture
def batcher():
    container = Mock(config={"transactions": {"max_batch": 8, "batch_lanes": 1}})
    threads = []
    container.spawn_managed_thread = lambda run: threads.append(eventlet.spawn(run))
    batcher = Batcher().bind(container, "batcher")
    batcher._test_container = container
    batcher.setup()
    batcher.start()
    yield batcher
    for thread in threads:
        thread.kill()


def test_an_idle_system_runs_a_batch_of_one_at_once(batcher):
    pipeline = SlowPipeline()
    assert batcher.submit(pipeline, "t1").wait() == "row of t1"
    assert pipeline.batches == [["t1"]]


def test_transactions_arriving_while_a_batch_runs_share_the_next_one(batcher):
    pipeline = SlowPipeline()
    events = [batcher.submit(pipeline, "t{}".format(i)) for i in range(20)]
    results = [event.wait() for event in events]
    assert results == ["row of t{}".format(i) for i in range(20)]
    assert [len(batch) for batch in pipeline.batches] == [8, 8, 4]  # max_batch 8


def test_a_failed_batch_answers_none_and_the_lane_goes_on(batcher):
    failing = SlowPipeline(fail=True)
    assert [batcher.submit(failing, t).wait() for t in ("a", "b")] == [None, None]
    assert batcher.submit(SlowPipeline(), "c").wait() == "row of c"
