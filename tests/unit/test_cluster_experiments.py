"""The cluster's chaos experiments: which processes kill-replica kills, and the check that
no money moved while two validators of three were down."""
import os
from types import SimpleNamespace
from unittest import mock

from chaos.cluster_experiments import nothing_completed_without_quorum, replica_of_each_service
from harness.bank import Operation
from shared.config import load_config


def config_with(**variables):
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PAYSYS_")}
    clean.update(variables)
    with mock.patch.dict(os.environ, clean, clear=True):
        return load_config()


def test_kill_replica_kills_one_process_of_each_service_that_has_another():
    assert replica_of_each_service(config_with(PAYSYS_REPLICAS="2")) == [
        "auth", "transactions", "validator_1", "payments", "ledger", "notifications",
        "gateway"]
    assert replica_of_each_service(config_with(PAYSYS_REPLICAS_LEDGER="2")) == ["ledger"]
    assert replica_of_each_service(config_with()) == []


def completed(at_s):
    return Operation("key", "a", "b", 1, started_s=at_s - 1, latency_s=1, outcome="ok",
                     transaction={"id": str(at_s)})


def test_a_transfer_completed_while_the_quorum_was_away_is_a_problem():
    target = SimpleNamespace(quorum_lost_at=100.0)
    in_flight_then = completed(103.0)  # a vote round already under way as they stopped
    after_the_heal = completed(130.0)
    assert nothing_completed_without_quorum(
        target, [in_flight_then, after_the_heal], injected=90.0, healed=120.0) == []
    problems = nothing_completed_without_quorum(
        target, [in_flight_then, completed(110.0)], injected=90.0, healed=120.0)
    assert len(problems) == 1 and "1 transfers completed without a quorum" in problems[0]
