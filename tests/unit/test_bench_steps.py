"""Where a transfer's time goes, as `make bench` reports it: the steps the gateway's money
desk and the transactions service count (shared/work_counters.py), as means per request
and per batch, and the report's lines."""
import pytest

from loadtests.bench_costs import Costs
from loadtests.bench_transfers import batch_cost, steps_lines, table
from shared import work_counters


def costs(steps):
    return Costs(completed=100, window_s=1.0, elapsed_s=1.0, cpu_ms={}, rpc_calls=10,
                 commits=10, steps=steps)


def counted(requests=100, desk_batches=10, queued_ms=2000.0, submit_ms=400.0, batches=10,
            request_ms=7500.0, **step_ms):
    steps = {work_counters.MONEY_REQUESTS: requests, work_counters.MONEY_REQUEST_MS: request_ms,
             work_counters.DESK_REQUESTS: requests, work_counters.DESK_BATCHES: desk_batches,
             work_counters.DESK_QUEUED_MS: queued_ms, work_counters.DESK_SUBMIT_MS: submit_ms,
             work_counters.CONSENSUS_BATCHES: batches}
    steps.update({work_counters.step_ms(step): step_ms.get(step, 0.0)
                  for step in work_counters.CONSENSUS_STEPS})
    return steps


def guarded(steps, **stages):
    """``steps`` with the guard's stages counted: ``stage=(items, round trips, ms)``."""
    steps = dict(steps)
    for stage in work_counters.GUARD_STAGES:
        steps.update(zip(work_counters.stage_counters(stage), stages.get(stage, (0, 0, 0.0))))
    return steps


def test_means_are_per_request_for_the_wait_and_per_batch_for_the_rest():
    means = costs(guarded(
        counted(prepare=50.0, vote=120.0, decide=30.0, post=90.0, finish=20.0),
        rate_limits=(200, 110, 600.0), idempotency_claim=(100, 50, 300.0),
        idempotency_answer=(100, 20, 200.0))).step_means()
    assert means == {"request": 75.0, "queued": 20.0, "submit": 40.0, "batch_size": 10.0,
                     "prepare": 5.0, "vote": 12.0, "decide": 3.0, "post": 9.0, "finish": 2.0,
                     "rate_limits": 6.0, "rate_limits_per_trip": 1.8,
                     "idempotency_claim": 3.0, "idempotency_claim_per_trip": 2.0,
                     "idempotency_answer": 2.0, "idempotency_answer_per_trip": 5.0}


def test_nothing_counted_or_nothing_measurable_gives_no_means():
    assert set(costs({}).step_means().values()) == {None}
    # Replicas: the counters of each process cannot be asked for.
    unmeasured = {name: None for name in counted()}
    assert set(costs(unmeasured).step_means().values()) == {None}


def test_the_report_splits_a_request_into_the_gateway_the_wait_and_the_submit_steps():
    single = costs(guarded(
        counted(prepare=50.0, vote=120.0, decide=30.0, post=90.0, finish=20.0),
        rate_limits=(200, 110, 600.0), idempotency_claim=(100, 50, 300.0),
        idempotency_answer=(100, 20, 200.0))).figures()
    batch = costs(dict(counted(requests=0, desk_batches=0, queued_ms=0.0, submit_ms=0.0,
                               batches=2, prepare=600.0, vote=300.0, decide=400.0, post=1000.0,
                               finish=400.0), **{work_counters.MONEY_REQUESTS: 2,
                                                 work_counters.MONEY_REQUEST_MS: 3000.0})).figures()
    lines = steps_lines({"half": single, "batch": batch, "mix": {}})
    assert lines[1].startswith("Where the time goes (mean ms)")
    assert lines[2:] == [
        "  half            request 75 = gateway 15 + queued 20 + submit 40; submit = prepare 5 "
        "+ vote 12 + decide 3 + post 9 + finish 2 + rest 9; 10 transfers a batch",
        "                  gateway 15 = rate limits 6 + key claim 3 + key answer 2 + rest 4; "
        "items a round trip: rate limits 1.8, key claim 2, key answer 5",
        "  batch           request 1500; a batch: prepare 300 + vote 150 + decide 200 + post 500 "
        "+ finish 200"]


def test_a_gateway_that_does_not_count_its_guard_stages_gets_no_split_of_its_time():
    single = costs(counted(prepare=50.0, vote=120.0, decide=30.0, post=90.0,
                           finish=20.0)).figures()
    lines = steps_lines({"half": single})
    assert len(lines) == 3 and lines[2].startswith("  half            request 75 = gateway 15")


def test_only_the_consensus_steps_are_timed_as_steps():
    with pytest.raises(ValueError):
        work_counters.timed_step("votes")
    with pytest.raises(ValueError):
        work_counters.stage_counters("desk")


def test_a_stage_s_items_each_count_their_wait_and_their_whole_round_trip():
    items, trips, ms = work_counters.stage_counters("idempotency_claim")
    before = work_counters.snapshot()
    observe = work_counters.stage_observer("idempotency_claim")
    observe(3, 0.006, 0.004)  # three claims that waited 6 ms in all, one 4 ms round trip
    observe(1, 0.0, 0.002)
    after = work_counters.snapshot()
    assert after[items] - before.get(items, 0) == 4
    assert after[trips] - before.get(trips, 0) == 2
    assert after[ms] - before.get(ms, 0) == pytest.approx(6 + 3 * 4 + 2)


def run(cpu_ms_per_transfer, batch_size, per_s):
    return {"cpu_ms_per_transfer_total": cpu_ms_per_transfer, "completed_transfers_per_s": per_s,
            "step_ms": {"batch_size": batch_size}, "vs_raw_postgres": None, "vs_health": None,
            "decision_latency_ms": {}, "rpcs_per_transfer": None, "commits_per_transfer": None,
            "cpu_ms_per_transfer": {}, "errors": {"total": 0}}


def test_a_batch_s_own_cost_is_read_off_the_saturated_and_half_runs():
    # 60 ms a batch and 2 ms a transfer: 4 ms a transfer in batches of 30, 6 in batches of 15.
    runs = {"transfers": run(4.0, 30.0, 300.0), "half": run(6.0, 15.0, 150.0)}
    cost = batch_cost(runs)
    assert cost == {"fixed_ms": 60.0, "per_transfer_ms": 2.0, "cores_at_half": 0.6}
    assert ("A batch costs 60 ms of CPU across the processes whatever its size, and each "
            "transfer in it 2 ms more (the transfers and half runs); at half load the "
            "batches' own cost took 0.6 cores.") in table(
                {"runs": runs, "batch_cost": cost, "drain_s": 0.0})


def test_no_batch_cost_without_two_batch_sizes_to_compare():
    assert batch_cost({"transfers": run(4.0, 30.0, 300.0)}) is None
    assert batch_cost({"transfers": run(4.0, 30.0, 300.0), "half": run(6.0, 30.0, 150.0)}) is None
