"""`paysys reconcile` on a running system whose Kafka mirror is behind: it waits while
the ledger's relay catches up and then says balanced (exit 0); a relay that does not
advance is broken (exit 1), and the command names what differs."""
import json
import subprocess
import threading
import uuid

from harness import process_faults
from harness.sandbox import PAYSYS, ROOT
from harness.servers import wait_for

DEPOSITS = 5


def deposit(session, account_id):
    response = session.post("/v1/deposits", headers={"Idempotency-Key": str(uuid.uuid4())},
                            json={"account_id": account_id, "amount": 1_000, "currency": "USD"})
    assert response.status_code == 201 and response.json()["status"] == "completed", \
        response.text


def postings_behind_the_mirror(system, session):
    """Deposits made while Kafka is away: posted in the ledger, waiting in its outbox."""
    account = session.open_account()["id"]
    system.supervisorctl("stop", "kafka")
    for _ in range(DEPOSITS):
        deposit(session, account)
    return account


class Reconcile:
    """`paysys reconcile` running in the background; ``waiting`` is set once it says it
    waits for the relay."""

    def __init__(self, system, *args):
        self.process = subprocess.Popen(PAYSYS + ["reconcile"] + list(args), env=system.env,
                                        cwd=ROOT, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True)
        self.waiting = threading.Event()
        self.progress = []
        self.reader = threading.Thread(target=self._read_progress, daemon=True)
        self.reader.start()

    def _read_progress(self):
        for line in self.process.stderr:
            self.progress.append(line)
            if "still to publish" in line:
                self.waiting.set()

    def finish(self, timeout_s=180):
        out = self.process.stdout.read()
        self.process.wait(timeout=timeout_s)
        self.reader.join(10)
        return self.process.returncode, out, "".join(self.progress)


def test_a_mirror_behind_is_waited_for_while_the_relay_catches_up_then_balanced(system, alice):
    postings_behind_the_mirror(system, alice)
    reconcile = None
    try:
        reconcile = Reconcile(system, "--wait", "120", "--stall", "60")
        assert reconcile.waiting.wait(60), reconcile.progress
    finally:
        system.supervisorctl("start", "kafka")  # back (empty): the relay publishes again
    status, out, progress = reconcile.finish()
    assert status == 0, out + progress
    assert "postings of the snapshot still to publish to Kafka" in progress
    assert out.startswith("Ledger reconciliation: BALANCED")
    assert "the relay: " in out and "(caught up)" in out
    assert "0 missing, 0 unexpected" in out and "read to offsets" in out
    assert "Verdict: balanced (exit 0)" in out


def test_a_relay_that_does_not_advance_is_broken_and_named(system, alice):
    postings_behind_the_mirror(system, alice)
    ledger = system.process_ids()["ledger"]
    with process_faults.paused(ledger):  # the ledger's relay stands still ...
        system.supervisorctl("start", "kafka")  # ... though Kafka is back (empty)
        status, out, progress = Reconcile(system, "--json", "--wait", "60",
                                          "--stall", "3").finish()
    assert status == 1, out + progress
    report = json.loads(out)
    mirror = report["mirror"]
    assert report["verdict"] == "broken" and report["relay"]["state"] == "stalled"
    assert report["reason"].startswith("the relay stopped advancing: {} postings of the "
                                       "snapshot unpublished".format(mirror["unpublished"]))
    assert mirror["unpublished"] >= 2 * DEPOSITS  # ours at least: nothing else stood still
    assert mirror["missing_count"] >= mirror["unpublished"]  # the broker came back empty
    # Resumed, the relay catches up and the same command says balanced.
    wait_for(lambda: Reconcile(system, "--wait", "60").finish()[0] == 0, 120, interval_s=2,
             what="a balanced reconciliation once the relay runs again")
