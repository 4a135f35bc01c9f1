"""/ready tells when RabbitMQ is gone, and the system comes back by itself when it returns."""
import pytest

from harness import servers
from harness.servers import wait_for

pytestmark = [pytest.mark.system, pytest.mark.stops_servers]


def test_ready_names_rabbitmq_while_it_is_down_and_recovers_without_restarting_a_service(system):
    assert system.get("/ready").status_code == 200
    pids_before = system.process_ids()

    servers.stop_rabbitmq()
    try:
        body, retry_after = wait_for(lambda: _unready(system), timeout_s=60,
                                     what="/ready answering 503")
        assert "rabbitmq" in body["unavailable"]
        assert body["checks"]["rabbitmq"] != "ok"
        assert body["checks"]["postgresql"] == "ok"
        assert body["checks"]["redis"] == "ok"
        assert int(retry_after) > 0
    finally:
        servers.start_rabbitmq()

    wait_for(lambda: system.get("/ready").status_code == 200, timeout_s=120,
             interval_s=1, what="/ready answering 200 again")
    assert system.process_ids() == pids_before, "a service was restarted"


def _unready(system):
    response = system.get("/ready", timeout=30)
    if response.status_code == 503:
        return response.json(), response.headers["Retry-After"]
    return None
