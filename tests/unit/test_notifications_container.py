"""The notifications service as it runs: a Nameko container on real RabbitMQ (a vhost of its
own), events dispatched the way the transactions service dispatches them, its timer sending
to a real receiver and SMTP sink, and a crash and restart mid-backlog.

Needs RabbitMQ on loopback with the management API (enabled if off, as the system tests do).
"""
import json
import time
import uuid

import pytest
from nameko.rpc import rpc
from nameko.runners import ServiceRunner
from nameko.standalone.events import event_dispatcher
from nameko.standalone.rpc import ClusterRpcProxy

from services.notifications.service import NotificationsService
from shared.event_outbox import BATCH_EVENT
from tests.support.vhosts import config_on_own_vhost
from tests.support.notifications import (  # noqa: F401 - fixtures
    clean_notifications,
    deliveries,
    event,
    receiver,
    sink,
    webhook_key_config,
)

EMAILS = {}


class AuthStandIn:
    """The auth service's get_user, over RPC, for the users the test names."""

    name = "auth"

    @rpc
    def get_user(self, user_id):
        return {"id": user_id, "email": EMAILS[user_id], "full_name": "T", "roles": []}


def wait_until(condition, timeout_s=15.0, what="the condition"):
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("{} did not hold within {} s".format(what, timeout_s))
        time.sleep(0.05)


@pytest.fixture
def config(database_url, sink, tmp_path):
    with config_on_own_vhost("notifications") as config:
        config["database"]["url"] = database_url
        config["notifications"] = {
            **config["notifications"],
            "email_enabled": True, "smtp_host": sink.host, "smtp_port": sink.port,
            "retry_base_s": 0.2,
            # Timeouts a busy machine does not reach: a POST the receiver took but answered
            # after the timeout is sent again (at least once), and this test counts POSTs.
            "retry_cap_s": 0.5, "webhook_timeout_s": 5, "smtp_timeout_s": 5,
            "rpc_timeout_ms": 1000,
            "lease_s": 8, "poll_interval_s": 0.1, "webhook_allowed_networks": "127.0.0.0/8",
            "webhook_key_file": webhook_key_config(tmp_path)["notifications"]["webhook_key_file"],
        }
        yield config


class Runners:
    def __init__(self, config):
        self.config = config
        self.running = []

    def start(self):
        runner = ServiceRunner(self.config)
        runner.add_service(NotificationsService)
        runner.add_service(AuthStandIn)
        runner.start()
        self.running.append(runner)
        return runner

    def stop_all(self):
        for runner in self.running:
            runner.stop()


@pytest.fixture
def runners(config):
    made = Runners(config)
    yield made
    made.stop_all()


def test_dispatched_events_are_delivered_once_and_survive_a_crash_mid_backlog(
        config, runners, receiver, sink, engine):
    runner = runners.start()
    user = str(uuid.uuid4())
    EMAILS[user] = "lin@example.test"
    with ClusterRpcProxy(config, timeout=10) as cluster:
        hook = cluster.notifications.create_webhook(user, receiver.url, ["transaction.completed"])
    dispatch = event_dispatcher(config)

    # Dispatched twice (at least once): one POST, one e-mail.
    first = event([user])
    dispatch("transactions", BATCH_EVENT, {"events": [first]})
    dispatch("transactions", BATCH_EVENT, {"events": [first]})
    (request,) = receiver.wait_for(1)
    assert json.loads(request.body)["id"] == first["id"]
    assert sink.wait_for(1)[0].rcpt_to == ["lin@example.test"]

    # The receiver goes down; a backlog builds; the service process dies mid-backlog.
    receiver.stop()
    backlog = [event([user]) for _ in range(10)]
    for payload in backlog:
        dispatch("transactions", BATCH_EVENT, {"events": [payload]})
    wait_until(lambda: len(deliveries(engine, channel="webhook")) == 11
               and all(r.attempts >= 1 for r in deliveries(engine, channel="webhook")),
               timeout_s=30, what="every webhook delivery tried at least once")
    runner.kill()
    runners.running.remove(runner)

    # Events dispatched while no notifications process runs wait in the durable queue.
    while_down = [event([user]) for _ in range(5)]
    for payload in while_down:
        dispatch("transactions", BATCH_EVENT, {"events": [payload]})

    receiver.start()
    runners.start()
    wait_until(lambda: len(receiver.received) >= 16
               and all(r.status == "delivered" for r in deliveries(engine)),
               timeout_s=60, what="the whole backlog delivered")
    ids = [json.loads(r.body)["id"] for r in receiver.received]
    assert sorted(ids) == sorted(p["id"] for p in [first] + backlog + while_down)
    # An e-mail the SMTP server took just before the kill, but whose attempt was not recorded
    # yet, is sent again after the lease (at least once); its Message-ID is the same.
    wait_until(lambda: len({m.message["Message-ID"] for m in sink.messages}) == 16,
               what="an e-mail per event")
    time.sleep(0.5)
    assert len(receiver.received) == 16
    assert {m.message["X-Paysys-Event-Id"] for m in sink.messages} == set(ids)

    with ClusterRpcProxy(config, timeout=10) as cluster:
        page = cluster.notifications.list_deliveries(user, limit=200)
        assert len(page["items"]) == 32
        assert {item["status"] for item in page["items"]} == {"delivered"}
        assert cluster.notifications.list_webhooks(user)["items"][0]["id"] == hook["id"]
