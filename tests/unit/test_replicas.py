"""Replicas (config.yml's ``replicas``): which processes `paysys up` starts, what each is
called, which identity, keys and metrics port it has; the gateway's shared address; a
setting overridden for one identity's processes."""
import os
import socket
from unittest import mock

from gateway.http import listen
from harness.servers import free_port
from paysys import process_overrides
from paysys.process_keys import holdings
from paysys.runner import service_class
from paysys.supervisor import RunDir, render_conf
from shared.catalog import identities, identity_of, process_names, service_for
from shared.config import load_config
from shared.metrics.ports import metrics_ports


def config_with(**variables):
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PAYSYS_")}
    clean.update(variables)
    with mock.patch.dict(os.environ, clean, clear=True):
        return load_config()


def test_one_replica_is_the_system_of_one_process_per_identity():
    config = config_with()
    assert process_names(config) == identities(config) == [
        "auth", "transactions", "validator_1", "validator_2", "validator_3", "payments",
        "ledger", "notifications", "gateway"]


def test_two_replicas_start_every_identity_twice_and_move_no_first_port():
    one, two = config_with(), config_with(PAYSYS_REPLICAS="2")
    names = process_names(two)
    assert names == identities(two) + [name + "-2" for name in identities(two)]
    assert {identity_of(name) for name in names} == set(identities(two))
    ports = metrics_ports(two)
    assert len(set(ports.values())) == len(names)  # each process its own port
    assert {name: ports[name] for name in identities(two)} == metrics_ports(one)


def test_a_service_may_have_its_own_count():
    config = config_with(PAYSYS_REPLICAS_GATEWAY="3", PAYSYS_REPLICAS_VALIDATOR="2")
    names = process_names(config)
    assert [n for n in names if service_for(n).name == "gateway"] == [
        "gateway", "gateway-2", "gateway-3"]
    assert "validator_3-2" in names and "ledger-2" not in names


def test_a_validators_replicas_are_that_one_voter():
    config = config_with(PAYSYS_REPLICAS="2")
    assert service_class("validator_2-2", service_for("validator_2-2")).name == "validator_2"
    assert service_class("ledger-2", service_for("ledger-2")).name == "ledger"
    held = holdings(config)
    assert held["validator_2-2"].keys() == held["validator_2"].keys() == {"validator_2.key"}


def test_supervisord_runs_each_replica_as_its_own_program(tmp_path):
    config = config_with(PAYSYS_REPLICAS="2", PAYSYS_RUN_DIR=str(tmp_path))
    conf = render_conf(config, RunDir(config))
    for name in process_names(config):
        assert "[program:{}]\n".format(name) in conf
        assert "paysys.runner {}\n".format(name) in conf
    assert "process-keys/validator_1-2" in conf


def test_every_gateway_process_listens_on_the_one_address():
    port = free_port()
    first = listen(("127.0.0.1", port))
    try:
        second = listen(("127.0.0.1", port))
        assert second.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1
        second.close()
    finally:
        first.close()


def test_a_setting_is_overridden_for_one_identitys_processes_alone():
    environ = {"PAYSYS_AMQP_URI": "pyamqp://broker/",
               process_overrides.variable("validator_1", "AMQP_URI"): "pyamqp://proxy/"}
    mine, theirs = dict(environ), dict(environ)
    assert process_overrides.apply("validator_1", mine) == ["PAYSYS_AMQP_URI"]
    assert process_overrides.apply("validator_2", theirs) == []
    assert (mine["PAYSYS_AMQP_URI"], theirs["PAYSYS_AMQP_URI"]) == (
        "pyamqp://proxy/", "pyamqp://broker/")
