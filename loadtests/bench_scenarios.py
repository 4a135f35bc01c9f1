"""The transfers-only scenarios of `make bench`, each a Locust run of
loadtests/transfers_locustfile.py between two readings of the system's costs
(loadtests/bench_costs.py):

- ``transfers``: single POST /v1/transfers, back to back from every user: the most the
  system sustains;
- ``half``: the same at half the rate ``transfers`` sustained (a fixed offered load):
  the latency a system not at its limit gives;
- ``batch``: POST /v1/transfers/batch of ``batch_size`` transfers each;
- ``validator-down``: as ``transfers`` with one validator of the pool stopped: a quorum
  still decides, and this says at what cost.

Completed transfers are counted in the database, so a transfer that failed or stayed
pending never counts, whatever the load generator saw.
"""
import time
from dataclasses import dataclass

from loadtests import bench_locust, bench_summary
from loadtests.bench_costs import Snapshot

TRANSFERS_ONLY = bench_locust.LOADTESTS / "transfers_locustfile.py"
# Locust's own start and stop, inside the measured window but outside the load.
SETTLE_S = 2


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    users: int
    run_s: float
    batch_size: int = 0
    rate_per_user: float = 0.0
    stopped_validator: str = None


def run(scenario, arguments, folder, probe, payers_path, progress, control):
    """The figures of one scenario: from the database and the processes (``costs``) and
    from Locust (latency of a decision)."""
    environment = {"BENCH_IDENTITIES": str(payers_path),
                   "BENCH_BATCH_SIZE": str(scenario.batch_size),
                   "BENCH_RATE_PER_USER": str(scenario.rate_per_user)}
    prefix = folder / "transfers-{}".format(scenario.name)
    command = bench_locust.locust_command(TRANSFERS_ONLY, arguments.url, prefix,
                                          users=scenario.users, spawn_rate=scenario.users,
                                          run_s=scenario.run_s)
    if scenario.stopped_validator:
        control("stop", scenario.stopped_validator)
        time.sleep(SETTLE_S)
    try:
        before = Snapshot.take(probe)
        process = bench_locust.start_locust(command, folder / "{}.log".format(prefix.name),
                                            environment)
        progress.wait("{}: {}".format(scenario.name, scenario.description),
                      scenario.run_s + bench_locust.LOCUST_START_S,
                      lambda: process.poll() is not None)
        costs = Snapshot.take(probe).since(before, probe)
    finally:
        if scenario.stopped_validator:
            control("start", scenario.stopped_validator)
    if process.returncode != 0:
        raise RuntimeError("Locust exited with {}; see {}.log".format(process.returncode, prefix))
    stats = bench_summary.read_csv(str(prefix) + "_stats.csv")
    decided = [row for row in stats if row["Type"] == bench_summary.EVENT_TYPE]
    request = bench_summary.find_row(
        stats, "POST", "/v1/transfers/batch" if scenario.batch_size else "/v1/transfers")
    figures = costs.figures()
    figures.update({
        "scenario": scenario.name,
        "users": scenario.users,
        "batch_size": scenario.batch_size,
        "offered_rate_per_s": round(scenario.rate_per_user * scenario.users, 1) or None,
        "stopped_validator": scenario.stopped_validator,
        "requests": int(request["Request Count"]) if request else 0,
        "request_latency_ms": bench_summary.latency_ms([request] if request else []),
        "decision_latency_ms": bench_summary.latency_ms(decided),
        "errors": bench_summary.error_counts(
            bench_summary.read_csv(str(prefix) + "_failures.csv")),
    })
    return figures


def half_of(saturated, users, run_s):
    """The ``half`` scenario: half the completed transfers/s ``saturated`` measured."""
    rate = (saturated.get("completed_transfers_per_s") or 0) / 2
    return Scenario("half", "{:.0f} transfers/s offered (half of the most)".format(rate),
                    users, run_s, rate_per_user=round(rate / users, 3))
