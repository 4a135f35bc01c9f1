"""Rotating a validator's vote key on a running system: real processes (every service under
supervisord, RabbitMQ, PostgreSQL, Redis), `paysys keys rotate` as an operator runs it.

During the grace period votes signed with the old key and with the new one both count;
after it, votes signed with the retired key count as none (logged at warning with the
validator they claimed), and the new key keeps working. A validator made to keep signing
with its old key is the test-only fault ``forge_votes: key_file:PATH`` (shared/faults.py).
Votes forged outright or cast in another validator's name are tests/system/test_recovery.py.
"""
import os
import shutil
import time

import psycopg2
import pytest

from harness.sandbox import System
from harness.servers import wait_for
from shared.votes import SigningKey
from tests.support.api import new_session
from tests.support.books import assert_books_right, finished, open_bank, send_transfer
from tests.support.recovery import (
    approvals, assert_moved_nothing, assert_moved_once, log_records,
)

pytestmark = pytest.mark.system

# Long enough for a transfer's vote round to finish inside it on a loaded machine; the
# test waits the rest out before it tries the retired key.
GRACE_S = 30
# validator_2 answers after validator_3, so validator_3's vote decides with validator_1's.
LATE_MS = 1_500


@pytest.fixture(scope="module")
def system(tmp_path_factory):
    running = System("votekeys_{}".format(os.getpid()), tmp_path_factory.mktemp("votekeys"),
                     redis_db=15, faults=True)
    with running:
        yield running


@pytest.fixture
def bank(system):
    return open_bank(system)


@pytest.fixture(scope="module")
def admin(system):
    return new_session(system, role="admin")


def stored_votes(system, transaction_id):
    """``{validator: key id}`` of the counted votes, as the transactions service stored them
    (the API shows votes without their signatures)."""
    with psycopg2.connect(system.database_url) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT votes FROM transactions.transactions WHERE id = %s",
                       (transaction_id,))
        (votes,) = cursor.fetchone()
    connection.close()
    return {vote["validator_id"]: vote["key_id"] for vote in votes}


def transfer(system, bank, faults):
    system.set_faults(faults)
    alice, bob = bank.clients
    operation, response = send_transfer(bank, alice, alice.accounts[0], bob.accounts[0], 500)
    assert response.status_code in (201, 202), response.text
    return finished(alice, operation)


def key_id(system, validator_id):
    return SigningKey.from_pem((system.keys_dir / (validator_id + ".key")).read_bytes()).key_id


def test_a_rotated_key_counts_beside_the_old_one_then_alone(system, bank, admin, tmp_path):
    retired = tmp_path / "validator_3.old.key"
    shutil.copy(system.keys_dir / "validator_3.key", retired)
    old_id = key_id(system, "validator_3")
    rotated = system.paysys("keys", "rotate", "validator_3", "--grace-s", str(GRACE_S))
    rotated_at = time.monotonic()
    new_id = key_id(system, "validator_3")
    assert new_id != old_id and new_id in rotated.stdout
    delayed = {"validator_2": {"vote_delay_ms": LATE_MS}}
    try:
        # During the grace period: the old key counts...
        old_vote = transfer(system, bank, dict(
            delayed, validator_3={"forge_votes": "key_file:{}".format(retired)}))
        assert (old_vote["status"], sorted(approvals(old_vote))) == (
            "completed", ["validator_1", "validator_3"])
        assert stored_votes(system, old_vote["id"])["validator_3"] == old_id
        assert_moved_once(bank, old_vote)
        # ...and so does the new one, which validator_3 picked up by itself.
        new_vote = wait_for(lambda: _signed_by(system, bank, delayed, new_id), 30,
                            what="validator_3 signing with its new key")
        assert sorted(approvals(new_vote)) == ["validator_1", "validator_3"]

        # After it: the retired key's votes are none. With validator_2 forging as well,
        # only validator_1's vote is left: no quorum, nothing moves.
        time.sleep(max(0.0, rotated_at + GRACE_S + 1 - time.monotonic()))
        untouched = open_bank(system)  # accounts no earlier transfer has moved
        refused = transfer(system, untouched, {
            "validator_2": {"forge_votes": "key"},
            "validator_3": {"forge_votes": "key_file:{}".format(retired)}})
        assert (refused["status"], refused["failure_reason"]) == ("failed", "no_quorum")
        assert [(v["validator_id"], v["decision"]) for v in refused["votes"]] == [
            ("validator_1", "approve")]
        assert_moved_nothing(untouched, refused)
        warnings = [r["message"] for r in log_records(system, "transactions")
                    if r.get("level") == "warning" and refused["id"] in r.get("message", "")]
        assert any("claiming to be validator_3 (key {}) not counted: retired key".format(old_id)
                   in message for message in warnings), warnings
        assert any("claiming to be validator_2" in message and "bad signature" in message
                   for message in warnings), warnings

        # The new key still counts after the grace period.
        after = transfer(system, bank, delayed)
        assert sorted(approvals(after)) == ["validator_1", "validator_3"]
        assert stored_votes(system, after["id"])["validator_3"] == new_id
    finally:
        system.set_faults({})
    assert_books_right(bank, admin)
    assert_books_right(untouched, admin)


def _signed_by(system, bank, faults, wanted_key_id):
    """A transfer whose validator_3 vote was signed with ``wanted_key_id``, or None."""
    transaction = transfer(system, bank, faults)
    assert transaction["status"] == "completed", transaction
    return transaction if stored_votes(system, transaction["id"]).get(
        "validator_3") == wanted_key_id else None
