"""A service's metrics port (shared/metrics/server.py, ports.py) and the scrape-time gauges
(shared/metrics/scrape.py), on a real Nameko container."""
import os

import eventlet
import pytest
import requests
from nameko.runners import ServiceRunner

from harness import servers
from shared.config import load_config
from shared.metrics.ports import metrics_port, metrics_ports
from shared.metrics.scrape import ScrapedGauges, Source
from shared.metrics.server import liveness_app
from shared.service import ServiceBase

# A collector of its own, not the process's: the test's gauge is no metric of paysys.
SCRAPED = ScrapedGauges()
SCRAPED_GAUGE = SCRAPED.gauge("paysys_test_scraped_things", "things, for a test", ["kind"])


class Plain(ServiceBase):
    """A service with nothing but what every service has (named as a catalogue process so
    it gets a port)."""

    name = "ledger"

    def deep_health(self):
        return {}


def config_with_ports(base):
    vhost = "paysys_unit_metrics_port_{}".format(os.getpid())
    servers.create_vhost(vhost)
    config = load_config()
    config["AMQP_URI"] = "pyamqp://guest:guest@127.0.0.1:5672/{}".format(vhost)
    config["metrics"] = {"port_base": base, "host": "127.0.0.1"}
    return config, vhost


@pytest.fixture
def ports():
    base, lock = servers.reserve_port_block()
    yield base
    lock.close()


def pool_and_ports(pool_size, port_base):
    config = load_config()
    config["validators"]["pool_size"] = pool_size
    config["metrics"]["port_base"] = port_base
    return config


def test_each_process_has_its_place_in_the_catalogue_as_its_port():
    config = pool_and_ports(3, 9400)
    assert metrics_ports(config) == {
        "auth": 9400, "transactions": 9401, "validator_1": 9402, "validator_2": 9403,
        "validator_3": 9404, "payments": 9405, "ledger": 9406, "notifications": 9407,
        "gateway": 9408}
    assert metrics_port(pool_and_ports(3, 0), "auth") is None
    assert metrics_port(config, "not_a_process") is None
    assert metrics_port(pool_and_ports(5, 20000), "gateway") == 20010


def test_the_port_serves_metrics_and_livez_while_the_container_runs(ports):
    config, vhost = config_with_ports(ports)
    runner = ServiceRunner(config)
    runner.add_service(Plain)
    runner.start()
    url = "http://127.0.0.1:{}".format(ports + 6)  # ledger's place
    try:
        livez = requests.get(url + "/livez", timeout=5)
        assert (livez.status_code, livez.text) == (200, "alive\n")
        page = requests.get(url + "/metrics", timeout=5)
        assert page.status_code == 200
        assert page.headers["Content-Type"].startswith("text/plain")
        assert "process_resident_memory_bytes" in page.text
        assert "paysys_rpc_duration_seconds" in page.text
        assert "_created" not in page.text
        assert requests.get(url + "/other", timeout=5).status_code == 404
        runner.stop()
        with pytest.raises(requests.ConnectionError):
            requests.get(url + "/livez", timeout=5)
    finally:
        runner.kill()
        servers.delete_vhost(vhost)


def test_livez_is_503_once_the_container_no_longer_runs():
    alive = [True]
    app = liveness_app(lambda: alive[0], metrics_app=None)
    answers = []

    def start_response(status, headers):
        answers.append(status)

    assert app({"PATH_INFO": "/livez", "REQUEST_METHOD": "GET"}, start_response) == [b"alive\n"]
    alive[0] = False
    assert app({"PATH_INFO": "/livez", "REQUEST_METHOD": "GET"}, start_response) == [
        b"not running\n"]
    assert answers == ["200 OK", "503 Service Unavailable"]


def test_a_port_already_taken_stops_the_process_at_start_naming_the_setting(ports):
    config, vhost = config_with_ports(ports)
    squatter = eventlet.listen(("127.0.0.1", ports + 6))
    runner = ServiceRunner(config)
    runner.add_service(Plain)
    try:
        with pytest.raises(RuntimeError, match="PAYSYS_METRICS_PORT_BASE"):
            runner.start()
    finally:
        runner.kill()
        squatter.close()
        servers.delete_vhost(vhost)


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_a_source_is_read_at_most_once_per_interval_and_a_failure_leaves_it_out():
    clock, reads = Clock(), []

    def read():
        reads.append(clock.now)
        if len(reads) == 3:
            raise OSError("the database went away")
        return {SCRAPED_GAUGE: {("apples",): len(reads)}}

    source = SCRAPED.attach(Source("test things", read, min_interval_s=5, clock=clock))
    try:
        def scraped():
            [family] = [f for f in SCRAPED.collect() if f.name == SCRAPED_GAUGE]
            return [(s.labels, s.value) for s in family.samples]

        assert scraped() == [({"kind": "apples"}, 1)]
        clock.now = 4
        assert scraped() == [({"kind": "apples"}, 1)]  # cached
        clock.now = 5
        assert scraped() == [({"kind": "apples"}, 2)]
        clock.now = 10
        assert scraped() == []  # failed: absent, not stale
        clock.now = 15
        assert scraped() == [({"kind": "apples"}, 4)]
        assert reads == [0, 5, 10, 15]
    finally:
        SCRAPED.detach(source)
    assert [f for f in SCRAPED.collect() if f.name == SCRAPED_GAUGE][0].samples == []


def test_a_source_that_hangs_is_given_up_after_its_timeout():
    source = Source("slow", lambda: eventlet.sleep(30), timeout_s=0.05)
    assert source.current() is None
