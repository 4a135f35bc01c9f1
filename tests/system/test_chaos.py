"""The CI-sized subset of the chaos experiments (chaos/experiments.py CI_SUBSET): each
runs the bank load for a few seconds, injects its fault, heals it, and the checker must
find the books right — conserved, nothing lost or doubled, nothing left pending, the
Kafka mirror equal to the ledger — with the system back to ready by itself."""
import pytest

from chaos import experiment, report
from chaos.experiments import CI_SUBSET, catalogue

# rabbitmq-restart and postgres-restart stop the machine's servers.
pytestmark = [pytest.mark.system, pytest.mark.stops_servers]

TIMINGS = experiment.Timings(before_s=3, after_s=3, ready_timeout_s=180,
                             settle_timeout_s=120, mirror_timeout_s=120)


@pytest.fixture(scope="module")
def target(system):
    return experiment.Target(system)


@pytest.mark.parametrize("name", CI_SUBSET)
def test_the_books_are_right_after(name, target, tmp_path):
    result = experiment.run(catalogue()[name], target, clients=3, timings=TIMINGS)
    summary = report.write(result, tmp_path / name)
    print("\n{}: {}".format(name, {key: summary[key] for key in (
        "verdict", "operations", "completed_per_s", "recovered_after_heal_s")}))
    assert result.problems == []
    assert summary["operations"].get("ok", 0) > 0
    assert target.ready()
    # Served again after the fault: some transfer completed after the heal.
    assert any(op.outcome == "ok" and op.started_s > result.healed for op in result.operations)
