"""The validator's compliance and fraud rules and the risk state they keep in a real
Redis: blocked accounts and users, amounts far above the usual, new counterparties; each
validator's own keys, each expiring; and without Redis the stateless rules still decide,
and deep health says so."""
from services.validator import rules
from services.validator.risk import MEMORY_TTL_S, VELOCITY_TTL_S, WINDOW_S
from shared.votes import PublicKeyFiles
from harness.servers import free_port
from tests.support.validator import (  # noqa: F401 - fixtures
    APPROVED,
    DAILY_LIMIT,
    MAX_AMOUNT,
    account,
    config,
    decisions,
    new_id,
    pool,
    redis_client,
    rejected,
    transaction,
    validator,
)
from tests.support.workers import NOON


# --- compliance ------------------------------------------------------------------------------


def test_the_configured_lists_block_accounts_and_users(pool, config):
    bad_account, bad_user = account(), new_id()
    config["validator"]["blocked_accounts"] = "{}, {}".format(new_id(), bad_account["id"])
    config["validator"]["blocked_users"] = bad_user
    validator = pool.worker("validator_1")
    by_initiator = transaction()
    by_initiator["initiator_id"] = bad_user
    votes = validator.vote([transaction(destination=bad_account), by_initiator,
                            transaction(source=account(owner_id=bad_user)), transaction()])
    assert decisions(votes) == [rejected(rules.COMPLIANCE_BLOCKED)] * 3 + [APPROVED]


# --- fraud -----------------------------------------------------------------------------------


def test_an_amount_far_above_the_usual_is_suspect(validator):
    payer, payee = account(), account()
    # No history: a large first payment is no signal.
    assert decisions(validator.vote([transaction(amount=9_000)])) == [APPROVED]
    assert decisions(validator.vote(
        [transaction(amount=100, source=payer, destination=payee) for _ in range(3)])) == [
        APPROVED] * 3
    # Usual 100: above both 50 × 100 = 5,000 and the 5,000 floor is suspect; 5,000 is not.
    assert decisions(validator.vote([transaction(amount=5_001, source=payer,
                                                 destination=payee)])) == [
        rejected(rules.FRAUD_SUSPECTED)]
    assert decisions(validator.vote([transaction(amount=5_000, source=payer,
                                                 destination=payee)])) == [APPROVED]


def test_new_counterparties_are_limited_within_ten_minutes(pool):
    now = [NOON]
    validator = pool.worker(clock=lambda: now[0])
    payer, friend = account(), account()
    assert decisions(validator.vote([
        transaction(amount=10, source=payer, destination=friend),
        transaction(amount=10, source=payer),
        transaction(amount=10, source=payer),
        transaction(amount=10, source=payer),  # the fourth new one in ten minutes
        transaction(amount=10, source=payer, destination=friend),  # known: fine
    ])) == [APPROVED] * 3 + [rejected(rules.FRAUD_SUSPECTED), APPROVED]
    now[0] += WINDOW_S - 1
    assert decisions(validator.vote([transaction(amount=10, source=payer)])) == [
        rejected(rules.FRAUD_SUSPECTED)]
    now[0] += 1
    assert decisions(validator.vote([transaction(amount=10, source=payer)])) == [APPROVED]


# --- risk state in Redis --------------------------------------------------------------------


def test_another_validator_keeps_its_own_state(pool):
    first, second = pool.worker("validator_1"), pool.worker("validator_2")
    payer = account()
    assert decisions(first.vote([transaction(amount=DAILY_LIMIT, source=payer)])) == [APPROVED]
    assert decisions(first.vote([transaction(amount=1, source=payer)])) == [
        rejected(rules.LIMIT_EXCEEDED)]
    assert decisions(second.vote([transaction(amount=DAILY_LIMIT, source=payer)])) == [
        APPROVED]


def test_every_key_is_this_validators_own_and_expires(pool, redis_client):
    validator = pool.worker("validator_2")
    payer = account()
    tx = transaction(amount=100, source=payer)
    validator.vote([tx])
    prefix = "paysys:validator_2:"
    counted = prefix + "counted:20260301"  # the day of the workers' clock (NOON)
    assert redis_client.sismember(counted, tx["id"])  # one set of the day's approvals
    keys = sorted(redis_client.scan_iter(match="*{}*".format(payer["id"]))) + [counted]
    assert [key[len(prefix):].split(":")[0] for key in keys] == [
        "fresh", "known", "usual", "velocity", "counted"]
    assert all(key.startswith(prefix) for key in keys)
    ttls = {key[len(prefix):].split(":")[0]: redis_client.ttl(key) for key in keys}
    assert all(ttl > 0 for ttl in ttls.values())
    assert 0 < ttls["velocity"] <= VELOCITY_TTL_S
    assert ttls["usual"] > VELOCITY_TTL_S and ttls["usual"] <= MEMORY_TTL_S
    assert ttls["fresh"] <= WINDOW_S


# --- Redis down ------------------------------------------------------------------------------


def test_without_redis_the_stateless_rules_still_decide(pool, config):
    config["redis"]["url"] = "redis://127.0.0.1:{}/0".format(free_port())
    validator = pool.worker("validator_1")
    payer = account()
    batch = [
        transaction(amount=DAILY_LIMIT, source=payer),
        transaction(amount=DAILY_LIMIT, source=payer),  # over the day: not knowable now
        transaction(source=account(balance=10)),
        transaction(source=account(status="closed")),
        transaction(amount=MAX_AMOUNT + 1, source=account(balance=2 * MAX_AMOUNT)),
        "garbage",
    ]
    for _ in range(5):  # past the circuit breaker's threshold: it stops asking
        votes = validator.vote(batch)
    assert decisions(votes) == [
        APPROVED, APPROVED,
        rejected(rules.INSUFFICIENT_FUNDS),
        rejected(rules.ACCOUNT_FROZEN),
        rejected(rules.LIMIT_EXCEEDED),
        rejected(rules.MALFORMED_TRANSACTION),
    ]
    keyring = PublicKeyFiles(config, ["validator_1"])
    assert keyring.check_round(votes)[1] is None
    assert validator.voter.store.breaker.state == "open"


# --- health ----------------------------------------------------------------------------


def test_deep_health_reports_the_redis_of_the_risk_state_and_no_database(validator):
    assert not hasattr(validator, "db")  # the validator keeps nothing in PostgreSQL
    assert validator.health(deep=True) == {
        "service": "validator_1", "status": "ok", "risk_state": "ok"}


def test_without_redis_deep_health_says_so_and_does_not_fail(pool, config):
    config["redis"]["url"] = "redis://127.0.0.1:{}/0".format(free_port())
    health = pool.worker("validator_1").health(deep=True)
    assert health["status"] == "ok"
    assert health["risk_state"].startswith("unavailable: ")
