"""Payments the system finishes by itself, through the whole running system: a capture whose
request gave up is finished by the recovery loop (Lifecycle.recover), and the expiry of an
authorization and a capture of it never both settle it (one of them is ``payment_busy``).

The moments are steered by stopping a service (supervisorctl) while a step is in flight,
and the service comes back only once the step's own driver has given up (its warning in
the payments log), so nothing but the recovery loop can finish it. The payments' own table
is read only to know which operation settles a payment."""
import psycopg2
import pytest

from harness.servers import wait_for
from tests.conftest import PAYMENT_HOLD_S
from tests.support.api import assert_problem
from tests.system.test_payments_api import act, authorized, balances, funded_account

pytestmark = pytest.mark.system

# Long enough for the hold to run out, the service to come back, its breaker to close and
# the recovery loop (every 5 s, for operations pending 5 s) to come round.
SETTLED_WITHIN_S = PAYMENT_HOLD_S + 60


@pytest.fixture
def shop(alice, bob):
    """Alice pays from a funded account; Bob owns the merchant account."""
    return funded_account(alice, 10_000), bob.open_account()


def status(user, payment):
    return user.get("/v1/payments/" + payment["id"]).json()["status"]


def settling_operation(system, payment):
    """``(id, kind, initiator)`` of the operation settling the payment's hold, or None."""
    with psycopg2.connect(system.database_url) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT o.id, o.kind, o.initiator_id FROM payments.payments p "
                       "JOIN payments.operations o ON o.id = p.settling_operation_id "
                       "WHERE p.id = %s", (payment["id"],))
        return cursor.fetchone()


def gave_up(system, warning):
    """Wait until the payments service logs ``warning``: a driver that stopped waiting."""
    wait_for(lambda: any(warning in line for line in system.log_lines("payments")),
             SETTLED_WITHIN_S, interval_s=0.5, what="the payments log saying " + warning)


def test_a_capture_left_in_flight_is_finished_by_recovery_and_its_hold_never_expires(
        system, alice, bob, shop):
    payer, merchant = shop
    payment = authorized(alice, payer, merchant, 4_000)
    control = authorized(alice, payer, merchant, 1_000)  # left to expire
    system.supervisorctl("stop", "transactions")
    try:
        # The capture is recorded and settles the hold, but its transaction cannot be
        # submitted: the request gives up, nothing retries it.
        assert act(bob, payment, "capture", 1_500).status_code == 503
        operation_id, kind, _ = settling_operation(system, payment)
        assert kind == "capture"
        gave_up(system, "payment operation {} not submitted yet".format(operation_id))
        # The expiry loop has run past both holds' time ...
        wait_for(lambda: status(alice, control) == "voided", SETTLED_WITHIN_S, interval_s=0.5,
                 what="the control authorization expired")
        # ... and left the one a capture is settling.
        assert status(alice, payment) == "authorized"
        assert balances(alice, payer) == (10_000, 6_000)
    finally:
        system.supervisorctl("start", "transactions")

    wait_for(lambda: status(bob, payment) == "captured", SETTLED_WITHIN_S, interval_s=0.5,
             what="the capture finished by the recovery loop")
    captured = bob.get("/v1/payments/" + payment["id"]).json()
    assert captured["captured_amount"] == 1_500
    [_, capture_id] = captured["transactions"]
    capture = bob.get("/v1/transfers/" + capture_id).json()
    assert (capture["type"], capture["status"], capture["amount"]) == (
        "capture", "completed", 1_500)
    # 1,500 moved once; the rest of its hold and the control's are free again.
    assert balances(alice, payer) == (8_500, 8_500)
    assert balances(bob, merchant) == (1_500, 1_500)


def test_a_capture_while_the_expiry_settles_the_authorization_is_payment_busy(
        system, alice, bob, shop):
    payer, merchant = shop
    payment = authorized(alice, payer, merchant, 4_000)
    system.supervisorctl("stop", "ledger")
    try:
        # At the end of the hold the expiry claims the payment for its void (its own
        # operation, no initiator); the ledger being away, the void stays in flight.
        _, kind, initiator = wait_for(lambda: settling_operation(system, payment),
                                      SETTLED_WITHIN_S, interval_s=0.5,
                                      what="the expiry claiming the payment")
        assert (kind, initiator) == ("void", None)
        assert_problem(act(bob, payment, "capture", 1_500), 409, "payment_busy")
        gave_up(system, "hold of payment {} not released yet".format(payment["id"]))
    finally:
        system.supervisorctl("start", "ledger")

    wait_for(lambda: status(alice, payment) == "voided", SETTLED_WITHIN_S, interval_s=0.5,
             what="the void finished by the recovery loop")
    assert balances(alice, payer) == (10_000, 10_000)  # the hold released, nothing moved
    assert balances(bob, merchant) == (0, 0)
    assert_problem(act(bob, payment, "capture", 1_500), 409, "payment_not_authorized")
