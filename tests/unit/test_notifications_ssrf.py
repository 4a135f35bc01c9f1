"""Webhook destinations (server-side request forgery): what registration refuses, what a
delivery refuses again, that a delivery connects to the address it checked and follows no
redirect. Real PostgreSQL, real receivers on loopback, the real resolver."""
import socket
import uuid

import eventlet
import pytest
from sqlalchemy import func, select

from services.notifications import destinations, records
from services.notifications import service as service_module
from services.notifications.settings import Settings
from shared.config import load_config
from shared.errors import ValidationFailed
from tests.support.notifications import (  # noqa: F401 - fixtures
    attempts,
    clean_notifications,
    deliveries,
    drive,
    event,
    make_worker,
    publish,
    receiver,
    secret_box,
    services,
    sink,
)
from tests.support.webhook_receiver import WebhookReceiver

EVENTS = ["transaction.completed"]

# Each non-public kind of address, as a URL names it.
REFUSED = [
    ("http://127.0.0.1/hook", "127.0.0.1 is a loopback address"),
    ("http://127.255.255.254:8080/", "loopback"),
    ("http://10.0.0.1/", "10.0.0.1 is a private address"),
    ("http://10.255.255.254/", "private"),
    ("http://172.16.0.1/", "172.16.0.1 is a private address"),
    ("http://172.31.255.254/", "private"),
    ("http://192.168.0.1/", "192.168.0.1 is a private address"),
    ("https://192.168.255.254/", "private"),
    ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a link-local address"),
    ("http://169.254.1.1/", "link-local"),
    ("http://[::1]/hook", "::1 is a loopback address"),
    ("http://[fc00::1]/", "fc00::1 is a unique local address"),
    ("http://[fd12:3456:789a::1]:8443/", "unique local"),
    ("http://[fe80::1]/", "link-local"),
    ("http://0.0.0.0/", "unspecified"),
    ("http://[::]/", "unspecified"),
    ("http://100.64.0.1/", "not a public address"),  # carrier-grade NAT
    ("http://224.0.0.251/", "multicast"),
    # IPv4 dressed as IPv6: mapped, NAT64, 6to4.
    ("http://[::ffff:127.0.0.1]/", "(that is 127.0.0.1) is a loopback address"),
    ("http://[::ffff:a9fe:a9fe]/", "(that is 169.254.169.254) is a link-local address"),
    ("http://[64:ff9b::a00:1]/", "(that is 10.0.0.1) is a private address"),
    ("http://[2002:c0a8:101::]/", "(that is 192.168.1.1) is a private address"),
    # What C's inet_aton reads as 127.0.0.1.
    ("http://2130706433/", "127.0.0.1 is a loopback address"),
    ("http://0x7f.1/", "127.0.0.1 is a loopback address"),
    ("http://127.1/", "127.0.0.1 is a loopback address"),
    # Names the resolver (/etc/hosts here) answers with loopback.
    ("http://localhost:8080/hook", "localhost resolves to 127.0.0.1, which is a loopback"),
    ("https://LOCALHOST./hook", "resolves to 127.0.0.1"),
]


def count_webhooks(engine):
    with engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(records.webhooks)).scalar()


@pytest.fixture
def strict(make_worker):
    """A worker as production runs: no network allowed besides public addresses."""
    return make_worker(webhook_allowed_networks="none")


# --- at registration ---------------------------------------------------------------------


@pytest.mark.parametrize("url, reason", REFUSED)
def test_registration_refuses_every_non_public_destination(strict, engine, url, reason):
    with pytest.raises(ValidationFailed) as raised:
        strict.create_webhook(str(uuid.uuid4()), url, EVENTS)
    (message,) = raised.value.errors["url"]
    assert reason in message and "public addresses only" in message, message
    assert set(raised.value.errors) == {"url"}
    assert count_webhooks(engine) == 0


@pytest.mark.parametrize("url", [
    "http://8.8.8.8/hook", "https://1.1.1.1:8443/x?y=z", "http://172.15.255.254/",
    "http://172.32.0.1/", "http://192.169.0.1/", "http://11.0.0.1/",
    "http://[2606:4700:4700::1111]/hook", "http://[::ffff:8.8.8.8]/",
])
def test_registration_accepts_public_addresses_even_next_to_private_ranges(strict, url):
    assert strict.create_webhook(str(uuid.uuid4()), url, EVENTS)["url"] == url


def test_a_name_that_does_not_resolve_now_is_accepted_and_checked_at_delivery(strict):
    # DNS may come later; every delivery resolves and checks it again.
    created = strict.create_webhook(str(uuid.uuid4()), "https://hooks.example.test/", EVENTS)
    assert created["url"] == "https://hooks.example.test/"


def test_a_slow_resolver_neither_holds_a_registration_nor_lets_a_delivery_through(
        make_worker, services, receiver, engine, monkeypatch):
    real_getaddrinfo = socket.getaddrinfo

    def slow_dns(host, *args, **kwargs):
        if host == "slow.example.test":
            eventlet.sleep(3)
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", args[0]))]
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", slow_dns)
    monkeypatch.setattr(service_module, "REGISTRATION_DNS_TIMEOUT_S", 0.2)
    worker = make_worker(email_enabled=False)  # webhook_timeout_s: 1
    user = services.auth.add()
    worker.create_webhook(user, "http://slow.example.test:{}/".format(receiver.port), EVENTS)
    publish(worker, event([user]))
    drive(worker, until=lambda: deliveries(engine)[0].attempts >= 1)
    assert "did not resolve within 1 s" in deliveries(engine)[0].last_error or \
        "timed out after 1 s" in deliveries(engine)[0].last_error
    assert receiver.received == []


def test_allowed_networks_let_in_only_what_they_list(make_worker):
    # The development config: loopback allowed, nothing else.
    development = make_worker(webhook_allowed_networks="127.0.0.0/8")
    owner = str(uuid.uuid4())
    for url in ("http://127.0.0.1:9/hook", "http://localhost:9/hook", "http://127.8.9.10/",
                "http://[::ffff:127.0.0.1]/"):
        assert development.create_webhook(owner, url, EVENTS)["url"] == url
    for url in ("http://10.0.0.1/", "http://[::1]/", "http://169.254.169.254/"):
        with pytest.raises(ValidationFailed):
            development.create_webhook(owner, url, EVENTS)

    internal = make_worker(webhook_allowed_networks="10.20.0.0/16, fd00:1::/32")
    internal.create_webhook(owner, "http://10.20.3.4/", EVENTS)
    internal.create_webhook(owner, "http://[fd00:1::5]/", EVENTS)
    for url in ("http://10.21.0.1/", "http://localhost/", "http://[fd00:2::5]/"):
        with pytest.raises(ValidationFailed):
            internal.create_webhook(owner, url, EVENTS)


# --- at delivery -----------------------------------------------------------------------------


def test_a_webhook_registered_while_allowed_is_refused_at_delivery_once_it_is_not(
        make_worker, services, receiver, engine):
    # Registered under the development config (or before this check existed), delivered
    # by a process that allows nothing: no connection, and an address never changes, so
    # the delivery fails at once.
    user = services.auth.add()
    make_worker().create_webhook(user, receiver.url, EVENTS)
    strict = make_worker(webhook_allowed_networks="", email_enabled=False)
    publish(strict, event([user]))
    drive(strict, until=lambda: deliveries(engine)[0].status != "pending")
    (row,) = deliveries(engine)
    assert (row.status, row.attempts) == ("failed", 1)
    assert row.last_error.startswith("destination refused: 127.0.0.1 is a loopback address")
    assert receiver.received == []


def test_a_name_resolving_to_loopback_is_refused_at_delivery_and_retried(
        make_worker, services, receiver, engine):
    user = services.auth.add()
    url = "http://localhost:{}/hook".format(receiver.port)
    make_worker().create_webhook(user, url, EVENTS)
    strict = make_worker(webhook_allowed_networks="", email_enabled=False)
    publish(strict, event([user]))
    drive(strict, until=lambda: deliveries(engine)[0].attempts >= 2)
    row = deliveries(engine)[0]
    # A name may come to resolve elsewhere: retried (with backoff), never sent here.
    assert row.status in ("pending", "failed") and row.failures >= 2
    assert "localhost resolves to 127.0.0.1, which is a loopback address" in row.last_error
    assert receiver.received == []

    # The same row, delivered by a process that allows loopback: it arrives, and the Host
    # header still names the URL's host although the connection went to the address.
    development = make_worker(email_enabled=False)
    with engine.begin() as connection:
        connection.execute(records.deliveries.update().values(
            status="pending", next_attempt_at=func.now()))
    drive(development, until=lambda: deliveries(engine)[0].status == "delivered")
    (request,) = receiver.wait_for(1)
    assert request.headers["Host"] == "localhost:{}".format(receiver.port)


def test_a_delivery_connects_to_the_address_it_checked_so_dns_rebinding_gets_nothing(
        make_worker, services, receiver, engine, monkeypatch):
    # A name that answers an allowed address to the registration and to the delivery's
    # check, and a forbidden one to every later question: were the check and the
    # connection two lookups, the POST would go to the forbidden address.
    answers = ["127.0.0.1", "127.0.0.1"]
    asked = []
    real_getaddrinfo = socket.getaddrinfo

    def rebinding_dns(host, port, *args, **kwargs):
        if host != "rebind.example.test":
            return real_getaddrinfo(host, port, *args, **kwargs)
        asked.append(host)
        address = answers.pop(0) if answers else "10.9.9.9"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding_dns)
    user = services.auth.add()
    worker = make_worker(webhook_allowed_networks="127.0.0.1/32", email_enabled=False)
    worker.create_webhook(user, "http://rebind.example.test:{}/hook".format(receiver.port),
                          EVENTS)
    publish(worker, event([user]))
    drive(worker, until=lambda: deliveries(engine)[0].status == "delivered")
    (request,) = receiver.wait_for(1)
    assert request.headers["Host"] == "rebind.example.test:{}".format(receiver.port)
    assert len(asked) == 2  # the registration's lookup and the delivery's: none more

    # The next delivery's lookup answers the forbidden address: refused, nothing sent.
    publish(worker, event([user]))
    drive(worker, until=lambda: all(row.attempts for row in deliveries(engine)))
    (refused,) = [row for row in deliveries(engine) if row.status != "delivered"]
    assert "rebind.example.test resolves to 10.9.9.9, which is a private address" in \
        refused.last_error
    assert len(receiver.received) == 1


def test_a_redirect_is_not_followed_not_even_to_an_allowed_address(
        make_worker, services, engine):
    inside = WebhookReceiver().start()  # what the redirect points at (allowed: loopback)
    redirecting = WebhookReceiver(script=[("redirect", inside.url),
                                          ("redirect", "http://169.254.169.254/latest/")],
                                  default_status=204).start()
    try:
        worker = make_worker(email_enabled=False)
        user = services.auth.add()
        worker.create_webhook(user, redirecting.url, EVENTS)
        publish(worker, event([user]))
        drive(worker, until=lambda: deliveries(engine)[0].status == "delivered",
              timeout_s=15)
        row = deliveries(engine)[0]
        history = attempts(engine, row.id)
        assert [(a.outcome, a.status_code) for a in history] == [
            ("failed", 302), ("failed", 302), ("succeeded", 204)]
        assert "HTTP 302" in history[0].error
        assert len(redirecting.received) == 3
        assert inside.received == []
    finally:
        redirecting.stop()
        inside.stop()


# --- the setting ---------------------------------------------------------------------------


def test_development_allows_loopback_and_production_sets_none(monkeypatch):
    monkeypatch.delenv("PAYSYS_WEBHOOK_ALLOWED_NETWORKS", raising=False)
    assert Settings.from_config(load_config()).webhook_allowed_networks == (
        destinations.parse_networks("127.0.0.0/8"))
    for production in ("none", ""):
        monkeypatch.setenv("PAYSYS_WEBHOOK_ALLOWED_NETWORKS", production)
        assert Settings.from_config(load_config()).webhook_allowed_networks == ()


@pytest.mark.parametrize("value", ["10.0.0.0/33", "intranet", "10.0.0.0/8,,nope"])
def test_a_bad_network_stops_the_service_from_starting(value):
    with pytest.raises(ValueError, match="webhook_allowed_networks"):
        config = load_config()
        config["notifications"]["webhook_allowed_networks"] = value
        Settings.from_config(config)
