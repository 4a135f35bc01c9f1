"""The validator's daily velocity limit in a real Redis: approved outflows add up per
account and UTC day, across calls and within a batch, once per vote however often it is
asked, and concurrent batches never approve past the limit together."""
import eventlet

from services.validator import rules
from tests.support.validator import (  # noqa: F401 - fixtures
    APPROVED,
    DAILY_LIMIT,
    account,
    config,
    decisions,
    pool,
    redis_client,
    rejected,
    transaction,
    validator,
)
from tests.support.workers import NOON


# --- velocity --------------------------------------------------------------------------------


def test_velocity_accumulates_across_calls(validator):
    payer = account()
    assert decisions(validator.vote([transaction(amount=6_000, source=payer)])) == [APPROVED]
    assert decisions(validator.vote([transaction(amount=4_000, source=payer)])) == [APPROVED]
    # Exactly at the daily limit now: one more minor unit is over it.
    assert decisions(validator.vote([transaction(amount=1, source=payer)])) == [
        rejected(rules.LIMIT_EXCEEDED)]
    # Another account has its own total.
    assert decisions(validator.vote([transaction(amount=10_000)])) == [APPROVED]


def test_velocity_accumulates_within_a_batch_and_counts_only_approvals(validator):
    payer = account()
    votes = validator.vote([
        transaction(amount=6_000, source=payer),
        transaction(amount=5_000, source=payer),  # over, with the first: not counted
        transaction(amount=4_000, source=payer),
        transaction(amount=1, source=payer),
    ])
    assert decisions(votes) == [
        APPROVED, rejected(rules.LIMIT_EXCEEDED), APPROVED, rejected(rules.LIMIT_EXCEEDED)]


def test_rejected_outflows_are_not_counted(validator):
    payer = account(balance=5_000)
    assert decisions(validator.vote([transaction(amount=9_000, source=payer)])) == [
        rejected(rules.INSUFFICIENT_FUNDS)]
    payer["balance"] = 1_000_000
    assert decisions(validator.vote([transaction(amount=10_000, source=payer)])) == [APPROVED]


def test_the_day_total_starts_again_the_next_utc_day(pool):
    now = [NOON]
    validator = pool.worker(clock=lambda: now[0])
    payer = account()
    assert decisions(validator.vote([transaction(amount=DAILY_LIMIT, source=payer)])) == [
        APPROVED]
    assert decisions(validator.vote([transaction(amount=1, source=payer)])) == [
        rejected(rules.LIMIT_EXCEEDED)]
    now[0] = NOON + 12 * 3600  # midnight UTC
    assert decisions(validator.vote([transaction(amount=DAILY_LIMIT, source=payer)])) == [
        APPROVED]


def test_a_vote_asked_again_does_not_count_the_money_twice(validator, redis_client):
    payer = account()
    tx = transaction(amount=7_000, source=payer)
    assert decisions(validator.vote([tx])) == [APPROVED]
    # A redelivered RPC, a recovery re-vote, or the same item twice in one batch.
    assert decisions(validator.vote([tx])) == [APPROVED]
    assert decisions(validator.vote([tx, tx])) == [APPROVED, APPROVED]
    key = validator.voter.store.velocity_key(payer["id"], NOON)
    assert redis_client.get(key) == "7000"
    # Its status is still checked afresh.
    payer["status"] = "frozen"
    assert decisions(validator.vote([tx])) == [rejected(rules.ACCOUNT_FROZEN)]


def test_deposits_and_captures_do_not_count_as_outflow(validator):
    payer = account()
    votes = validator.vote([
        transaction("deposit", amount=DAILY_LIMIT, destination=payer),
        transaction("capture", amount=DAILY_LIMIT, source=payer),
        transaction("transfer", amount=DAILY_LIMIT, source=payer),
    ])
    assert decisions(votes) == [APPROVED] * 3


def test_every_counted_type_counts_towards_the_same_total(validator):
    payer, payee = account(), account()
    votes = validator.vote([
        transaction(type_, amount=2_500, source=payer,
                    destination=None if type_ == "withdrawal" else payee)
        for type_ in ("withdrawal", "transfer", "payment", "refund")
    ] + [transaction(amount=1, source=payer, destination=payee)])
    assert decisions(votes) == [APPROVED] * 4 + [rejected(rules.LIMIT_EXCEEDED)]


def test_concurrent_batches_never_approve_past_the_limit_together(validator):
    # Ten workers of this validator at once, all paying from one account: the read, the
    # decision and the write of one batch never interleave with another's.
    payer, payee = account(), account()
    pool = eventlet.GreenPool()
    votes = list(pool.imap(lambda _: validator.vote(
        [transaction(amount=2_000, source=payer, destination=payee)]), range(10)))
    outcomes = [answer["votes"][0]["decision"] for answer in votes]
    assert outcomes.count("approve") == DAILY_LIMIT // 2_000
    assert all(answer["votes"][0]["reasons"] in ([], [rules.LIMIT_EXCEEDED])
               for answer in votes)


def test_yen_amounts_count_in_yen(validator):
    payer, payee = account("JPY"), account("JPY")
    votes = validator.vote([
        transaction(amount=DAILY_LIMIT - 1, source=payer, destination=payee, currency="JPY"),
        transaction(amount=1, source=payer, destination=payee, currency="JPY"),
        transaction(amount=1, source=payer, destination=payee, currency="JPY"),
        transaction(amount=1, source=payer, destination=account("USD"), currency="JPY"),
    ])
    assert decisions(votes) == [APPROVED, APPROVED, rejected(rules.LIMIT_EXCEEDED),
                                rejected(rules.LIMIT_EXCEEDED, rules.CURRENCY_MISMATCH)]


def test_two_processes_of_one_validator_never_approve_past_the_limit_together(pool):
    # Replicas: two processes serve validator_1, each with its own lock and Redis client,
    # one risk state between them. Their batches interleave (each waits on Redis); the
    # compare-and-set of the record makes a batch judged on an old total judge again.
    first, second = pool.worker("validator_1"), pool.worker("validator_1")
    payer, payee = account(), account()
    green = eventlet.GreenPool()
    votes = list(green.imap(lambda n: (first if n % 2 else second).vote(
        [transaction(amount=2_000, source=payer, destination=payee)]), range(10)))
    outcomes = [answer["votes"][0]["decision"] for answer in votes]
    assert outcomes.count("approve") == DAILY_LIMIT // 2_000
    # And the total they recorded is the limit, not more.
    assert decisions(first.vote([transaction(amount=1, source=payer)])) == [
        rejected(rules.LIMIT_EXCEEDED)]
