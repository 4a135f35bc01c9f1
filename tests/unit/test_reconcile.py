"""Reconciliation (services/ledger/reconciliation.py): the ledger's ``reconciliation()``
RPC and ``paysys reconcile``, against real PostgreSQL and a real broker of the test's own.

The module has a database of its own (consistent books); each test publishes the whole
outbox to a new topic first, so the mirror can be whole."""
import dataclasses
import io
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import eventlet
import pytest
from kafka import KafkaProducer
from nameko.testing.services import worker_factory
from sqlalchemy import func, select, update

from paysys import reconcile as cli_reconcile
from services.ledger import reconciliation
from services.ledger.entries import entries
from services.ledger.outbox import outbox
from services.ledger.mirror_relay import RelaySettings, mirror_relay
from services.ledger.service import LedgerService
from shared.db import DatabaseAccess
from shared.errors import ServiceUnavailable
from tests.support.databases import migrated_database, pooled_engine
from tests.support.kafka import running_broker
from tests.support.ledger import deposit, open_account, posting

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def kafka_broker():
    with running_broker() as broker:
        yield broker


@pytest.fixture(scope="module")
def books_url():
    """A database of this module's own: reconciliation looks at the whole ledger, and
    other tests write inconsistent books on purpose (to see totals find them)."""
    with migrated_database("paysys_unit_books_{}".format(os.getpid())) as url:
        yield url


@pytest.fixture(scope="module")
def engine(books_url):
    with pooled_engine(books_url, "paysys-tests-books") as engine:
        yield engine


@pytest.fixture
def config(service_config, kafka_broker, books_url):
    config = dict(service_config)
    config["database"] = dict(service_config["database"], url=books_url)
    config["kafka"] = dict(
        service_config["kafka"], bootstrap_servers=kafka_broker.bootstrap_servers,
        ledger_topic="ledger.test.{}".format(uuid.uuid4().hex[:12]), request_timeout_ms=1000)
    config["ledger"] = dict(service_config["ledger"], reconcile_wait_ms=300)
    return config


@pytest.fixture
def ledger(engine, config):
    return worker_factory(LedgerService, db=DatabaseAccess(engine, "ledger"), config=config)


@pytest.fixture
def relay(engine, config):
    relay = mirror_relay(engine, RelaySettings.from_config(config))
    yield relay
    relay.close()


def publish(relay):
    while relay.step():
        pass


def entry_count(engine):
    with engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(entries)).scalar_one()


def some_postings(ledger):
    alice, bob, carol = open_account(ledger), open_account(ledger), open_account(ledger, "EUR")
    results = ledger.post([deposit(alice, 5_000), posting(alice, bob, 1_500),
                           deposit(carol, 700, currency="EUR")])
    assert [result["status"] for result in results] == ["posted"] * 3
    return results


def test_a_consistent_ledger_and_a_whole_mirror_are_balanced(ledger, relay, engine):
    some_postings(ledger)
    publish(relay)
    report = ledger.reconciliation()
    assert list(report) == ["balanced", "currencies", "accounts_checked", "discrepancies",
                            "chain", "mirror"]
    assert report["balanced"] is True, report
    chain = report["chain"]
    assert chain["valid"] is True and chain["first_broken"] is None
    assert chain["postings_checked"] == sum(head["seq"] for head in chain["heads"]) >= 3
    assert chain["entries_checked"] == entry_count(engine)
    assert {"USD", "EUR"} <= set(report["currencies"])
    for sums in report["currencies"].values():
        assert sums == {"entries_sum": 0, "accounts_sum": 0}
    assert report["discrepancies"] == [] and report["accounts_checked"] >= 4
    mirror = report["mirror"]
    assert mirror["ledger_postings"] == mirror["kafka_postings"] == entry_count(engine)
    assert mirror["missing"] == [] and mirror["missing_count"] == 0
    assert mirror["unexpected"] == [] and mirror["unpublished"] == 0
    assert mirror["topic"] == relay.settings.topic
    json.dumps(report)  # what crosses the wire is plain JSON


def test_a_posting_absent_from_the_topic_is_missing(ledger, relay, engine):
    publish(relay)
    [result] = ledger.post([deposit(open_account(ledger), 250)])
    lost = result["entries"][1]
    with engine.begin() as connection:  # a relay that stamped a message it never sent
        seq = connection.execute(
            update(outbox).where(outbox.c.account_id == lost["account_id"])
            .values(published_at=func.now()).returning(outbox.c.account_seq)).scalar_one()
    publish(relay)

    report = ledger.reconciliation()
    assert report["balanced"] is False
    assert report["mirror"]["missing"] == ["{}:{}".format(lost["account_id"], seq)]
    assert report["mirror"]["missing_count"] == 1
    assert report["mirror"]["kafka_postings"] == report["mirror"]["ledger_postings"] - 1
    # The books themselves are fine.
    assert report["discrepancies"] == []
    assert all(sums["entries_sum"] == 0 for sums in report["currencies"].values())

    with engine.begin() as connection:  # sent after all: the mirror is whole again
        connection.execute(update(outbox).where(outbox.c.account_id == lost["account_id"])
                           .values(published_at=None))
    publish(relay)
    assert ledger.reconciliation()["balanced"] is True


def test_a_message_for_no_entry_is_unexpected(ledger, relay, kafka_broker):
    publish(relay)
    stranger = str(uuid.uuid4())
    producer = KafkaProducer(bootstrap_servers=kafka_broker.bootstrap_servers, acks="all")
    try:
        producer.send(relay.settings.topic, key=stranger.encode(), value=json.dumps(
            {"account_id": stranger, "account_seq": 1}).encode()).get(5)
    finally:
        producer.close(timeout=5)
    report = ledger.reconciliation()
    assert report["balanced"] is False
    assert report["mirror"]["unexpected"] == ["{}:1".format(stranger)]
    assert report["mirror"]["missing"] == []


def test_postings_the_relay_has_not_published_are_missing_after_the_wait(ledger, relay):
    publish(relay)
    [result] = ledger.post([deposit(open_account(ledger), 40)])  # no relay runs in this test
    report = ledger.reconciliation()
    assert report["balanced"] is False
    assert report["mirror"]["unpublished"] == 2
    assert "{}:1".format(result["entries"][1]["account_id"]) in report["mirror"]["missing"]
    publish(relay)
    assert ledger.reconciliation()["balanced"] is True


def test_postings_the_relay_publishes_while_the_reconciliation_waits_are_not_missing(
        ledger, relay, config, monkeypatch):
    publish(relay)
    ledger.post([deposit(open_account(ledger), 40)])
    config["ledger"]["reconcile_wait_ms"] = 60_000  # it ends as soon as the relay is done
    waiting = threading.Event()
    wait_for_relay = reconciliation.wait_for_relay

    def entered_wait(*args):
        waiting.set()
        return wait_for_relay(*args)

    monkeypatch.setattr(reconciliation, "wait_for_relay", entered_wait)
    reconciling = eventlet.spawn(ledger.reconciliation)
    assert waiting.wait(30)
    publish(relay)  # only now, while it waits
    report = reconciling.wait()
    assert report["balanced"] is True
    assert (report["mirror"]["unpublished"], report["mirror"]["missing"]) == (0, [])


def test_kafka_not_answering_is_service_unavailable(ledger, relay, kafka_broker):
    publish(relay)
    kafka_broker.stop()
    # Nothing listens: it says so at once rather than wait out a Kafka client's timeout.
    with pytest.raises(ServiceUnavailable, match="nothing listens at") as raised:
        ledger.reconciliation()
    assert raised.value.status == 503 and raised.value.retry_after_s > 0


# --- paysys reconcile ---------------------------------------------------------------------


def run_cli(config, err=None, **options):
    out, err = io.StringIO(), err or io.StringIO()
    status = cli_reconcile.run(config, out=out, err=err, **options)
    return status, out.getvalue(), err.getvalue()


def test_the_command_says_balanced_and_exits_0(ledger, relay, config):
    some_postings(ledger)
    publish(relay)
    status, out, err = run_cli(config)
    assert status == 0, out + err
    assert out.startswith("Ledger reconciliation: BALANCED")
    assert "USD" in out and "0 missing" in out and "Hash chain: INTACT" in out
    status, out, err = run_cli(config, as_json=True)
    assert status == 0 and json.loads(out)["balanced"] is True


def test_the_command_lists_what_is_missing_and_exits_1(ledger, relay, config, engine):
    publish(relay)
    [result] = ledger.post([deposit(open_account(ledger), 250)])
    account = result["entries"][1]["account_id"]
    with engine.begin() as connection:
        connection.execute(update(outbox).where(outbox.c.account_id == account)
                           .values(published_at=func.now()))
    publish(relay)
    status, out, err = run_cli(config, wait_s=0)
    assert status == 1
    assert "NOT BALANCED" in out and "missing {}:1".format(account) in out
    status, out, err = run_cli(config, as_json=True, wait_s=0)
    assert status == 1 and json.loads(out)["mirror"]["missing"] == ["{}:1".format(account)]
    with engine.begin() as connection:
        connection.execute(update(outbox).where(outbox.c.account_id == account)
                           .values(published_at=None))
    publish(relay)


def test_the_command_exits_2_when_kafka_does_not_answer(config, kafka_broker):
    kafka_broker.stop()
    status, out, err = run_cli(config)
    assert status == 2
    assert "Kafka mirror cannot be read" in err
    # What it did compare, the books, is there all the same.
    assert out.startswith("Ledger reconciliation: NOT DONE") and "Accounts checked" in out
    assert "Verdict: could not reconcile (exit 2)" in out


def test_a_mirror_behind_that_catches_up_while_the_command_waits_exits_0(
        ledger, relay, config, engine):
    publish(relay)
    for _ in range(5):
        ledger.post([deposit(open_account(ledger), 40)])
    slow = slow_relay(engine, config)
    waiting, done = threading.Event(), threading.Event()

    def publish_when_waited_for():
        waiting.wait(60)
        while not done.is_set() and slow.step():  # a row a round: the relay advances
            time.sleep(0.05)

    publisher = threading.Thread(target=publish_when_waited_for, daemon=True)
    publisher.start()
    try:
        status, out, err = run_cli(config, wait_s=120, stall_s=30,
                                   err=ProgressSeen("still to publish", waiting))
    finally:
        done.set()
        publisher.join(30)
        slow.close()
    assert status == 0, out + err
    assert "10 postings of the snapshot still to publish" in err  # it waited, and said so
    assert out.startswith("Ledger reconciliation: BALANCED")
    assert "the relay: 10 postings of the snapshot to publish at the start, 0 after" in out
    assert "0 missing" in out and "read to offsets" in out
    assert "Verdict: balanced (exit 0)" in out


def test_a_mirror_still_advancing_when_the_wait_runs_out_exits_3(ledger, relay, config, engine):
    publish(relay)
    for _ in range(40):
        ledger.post([deposit(open_account(ledger), 40)])
    slow = slow_relay(engine, config)
    started, done = threading.Event(), threading.Event()

    def trickle():
        started.wait(60)
        while not done.is_set() and slow.step():
            time.sleep(0.2)  # 80 rows at 5 a second: far longer than the wait below

    publisher = threading.Thread(target=trickle, daemon=True)
    publisher.start()
    try:
        status, out, err = run_cli(config, as_json=True, wait_s=3, stall_s=30,
                                   err=ProgressSeen("still to publish", started))
    finally:
        done.set()
        publisher.join(30)
        slow.close()
    assert status == 3, out + err
    report = json.loads(out)
    assert report["verdict"] == "catching up" and report["balanced"] is False
    assert report["relay"]["state"] == "catching up"
    assert 0 < report["relay"]["unpublished"] < report["relay"]["unpublished_at_start"] == 80
    assert 0 < report["mirror"]["missing_count"] <= report["mirror"]["unpublished"]
    assert "run again" in report["reason"]
    publish(relay)


def test_a_relay_that_stopped_is_broken_and_named(ledger, relay, config):
    publish(relay)
    [result] = ledger.post([deposit(open_account(ledger), 40)])  # and no relay runs
    account = result["entries"][1]["account_id"]
    status, out, err = run_cli(config, wait_s=60, stall_s=1)
    assert status == 1, out + err
    assert out.startswith("Ledger reconciliation: NOT BALANCED (broken)")
    assert "Verdict: broken (exit 1): the relay stopped advancing: 2 postings of the " \
        "snapshot unpublished" in out
    assert "missing {}:1".format(account) in out
    publish(relay)


def test_a_mirror_that_differs_is_broken_and_says_what_differs(ledger, relay, config, engine):
    publish(relay)
    [result] = ledger.post([deposit(open_account(ledger), 250)])
    account = result["entries"][1]["account_id"]
    with engine.begin() as connection:  # a relay that stamped a message it never sent
        connection.execute(update(outbox).where(outbox.c.account_id == account)
                           .values(published_at=func.now()))
    publish(relay)
    status, out, err = run_cli(config, as_json=True)  # nothing to wait for: at once
    assert status == 1, out + err
    report = json.loads(out)
    assert report["verdict"] == "broken"
    assert report["reason"] == ("1 postings the relay has published are missing from the "
                                "mirror (first: {}:1)".format(account))
    assert report["relay"]["state"] == "caught up"
    with engine.begin() as connection:
        connection.execute(update(outbox).where(outbox.c.account_id == account)
                           .values(published_at=None))
    publish(relay)


class ProgressSeen(io.StringIO):
    """The command's stderr: sets ``event`` once a line holding ``words`` is written."""

    def __init__(self, words, event):
        super().__init__()
        self.words, self.event = words, event

    def write(self, text):
        if self.words in text:
            self.event.set()
        return super().write(text)


def slow_relay(engine, config):
    """A relay of one row a round, so the test sees it advance."""
    return mirror_relay(engine, dataclasses.replace(RelaySettings.from_config(config),
                                                    batch_size=1))


def test_paysys_reconcile_on_the_command_line(ledger, relay, config, books_url):
    publish(relay)
    env = dict(os.environ, PAYSYS_DATABASE_URL=books_url,
               PAYSYS_KAFKA_BOOTSTRAP_SERVERS=config["kafka"]["bootstrap_servers"],
               PAYSYS_KAFKA_LEDGER_TOPIC=config["kafka"]["ledger_topic"],
               PAYSYS_KAFKA_TIMEOUT_MS="1000")
    completed = subprocess.run([sys.executable, "-m", "paysys.cli", "reconcile", "--json"],
                               cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    report = json.loads(completed.stdout)
    assert report["balanced"] is True
    assert report["mirror"]["topic"] == config["kafka"]["ledger_topic"]
