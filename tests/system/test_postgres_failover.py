"""PostgreSQL with automatic failover (PAYSYS_POSTGRES_HA=1): a system whose database is a
pg_auto_failover primary and synchronous standby of its own. Under the bank load its
primary is killed (kill -9, and it stays down); pg_auto_failover promotes the standby, the
services follow it without a restart, transfers complete again, and every transfer
acknowledged before, during or after is in the ledger exactly once. Then the lost node is
started again and rejoins as the standby.

About three minutes: a formation's start (~20 s), the failover (failover_timeout_s 10:
~25 s), the checker.
"""
import os

import pytest

from chaos import experiment, report
from chaos.experiments import catalogue
from harness.sandbox import System
from paysys import postgres_ha

pytestmark = [
    pytest.mark.system,
    pytest.mark.skipif(bool(postgres_ha.missing()), reason=postgres_ha.INSTALL_HINT),
]

TIMINGS = experiment.Timings(before_s=3, after_s=3, ready_timeout_s=180,
                             settle_timeout_s=120, mirror_timeout_s=120)


@pytest.fixture(scope="module")
def system(tmp_path_factory):
    running = System("pgha_{}".format(os.getpid()), tmp_path_factory.mktemp("pgha"),
                     redis_db=6, postgres_ha=True)
    with running:
        yield running


def test_the_services_connect_to_the_primary_of_the_pair(system):
    cluster = system.postgres_cluster()
    assert cluster.healthy(), cluster.describe()
    primary_port = cluster.node_ports[cluster.primary()]
    assert "127.0.0.1:{}".format(primary_port) in system.database_url
    assert system.get("/ready").status_code == 200


def test_transfers_go_on_after_the_primary_is_lost_and_none_is_lost(system, tmp_path):
    cluster = system.postgres_cluster()
    first_primary = cluster.primary()
    result = experiment.run(catalogue()["postgres-primary-kill"], experiment.Target(system),
                            clients=3, timings=TIMINGS)
    summary = report.write(result, tmp_path / "postgres-primary-kill")
    print("\npostgres-primary-kill: {}".format({key: summary[key] for key in (
        "verdict", "operations", "completed_per_s", "observations")}))
    # Conserved, each acknowledged transfer once, nothing pending, the mirror equal.
    assert result.problems == []
    # The standby took over, and transfers completed on it after the failover.
    assert result.observations["killed_node"] == first_primary
    new_primary = cluster.primary()
    assert new_primary not in (None, first_primary)
    assert any(op.outcome == "ok" and op.started_s > result.injected
               + result.observations["failover_s"] for op in result.operations)
    # The lost node is back, as the synchronous standby.
    assert cluster.healthy(), cluster.describe()
