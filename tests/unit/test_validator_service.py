"""The validator's ``vote`` RPC: real signing keys (from its provider) and a real Redis.

Workers come from ``worker_factory`` with the dependencies its providers build from config,
each validator under its own name as ``paysys serve validator_N`` runs it.
"""
import uuid

import eventlet
import pytest
import redis

from services.validator import rules
from services.validator.dependencies import VoteKey
from services.validator.risk import MEMORY_TTL_S, VELOCITY_TTL_S, WINDOW_S
from shared.errors import ValidationFailed
from shared.votes import ensure_validator_keys, key_file, load_validator_key, verify_vote
from harness.servers import free_port
from tests.support.workers import NOON, bound
from tests.support.workers import ValidatorWorkers as Pool

DAILY_LIMIT = 10_000
MAX_AMOUNT = 1_000_000


@pytest.fixture
def config(service_config, tmp_path):
    section = service_config["validators"]
    section.update(keys_dir=str(tmp_path / "keys"), pool_size=3,
                   max_amount_minor=MAX_AMOUNT, daily_limit_minor=DAILY_LIMIT,
                   fraud_multiplier=50, fraud_floor_minor=5_000,
                   new_counterparties_per_10_min=3, blocked_accounts="", blocked_users="")
    ensure_validator_keys(service_config)
    return service_config


@pytest.fixture
def redis_client(config):
    client = redis.Redis.from_url(config["redis"]["url"], decode_responses=True)
    yield client
    client.close()


@pytest.fixture
def pool(config):
    made = Pool(config)
    yield made
    made.stop()


@pytest.fixture
def validator(pool):
    return pool.worker("validator_1")


def new_id():
    return str(uuid.uuid4())


def account(currency="USD", balance=1_000_000, status="active", **values):
    values = dict({"id": new_id(), "owner_id": new_id(), "currency": currency,
                   "status": status, "overdraft_limit": 0, "balance": balance, "held": 0},
                  **values)
    return values


def transaction(type_="transfer", amount=1_000, source="new", destination="new",
                currency="USD"):
    if source == "new":
        source = None if type_ == "deposit" else account(currency)
    if destination == "new":
        destination = None if type_ == "withdrawal" else account(currency)
    return {"id": new_id(), "type": type_, "amount": amount, "currency": currency,
            "initiator_id": new_id(), "source": source, "destination": destination,
            "created_at": "2026-03-01T12:00:00.000000Z"}


def decisions(votes):
    return [(vote["decision"], vote["reasons"]) for vote in votes]


APPROVED = ("approve", [])


def rejected(*reasons):
    return ("reject", sorted(reasons))


# --- signing ---------------------------------------------------------------------------------


def test_votes_are_signed_by_this_validator_and_verify(validator, config):
    good, poor = transaction(), transaction(source=account(balance=10))
    votes = validator.vote([good, poor])
    assert [vote["transaction_id"] for vote in votes] == [good["id"], poor["id"]]
    assert {vote["validator_id"] for vote in votes} == {"validator_1"}
    assert decisions(votes) == [APPROVED, rejected(rules.INSUFFICIENT_FUNDS)]
    key = load_validator_key(config, "validator_1")
    assert all(verify_vote(key, vote) for vote in votes)
    # Another validator's key does not verify it, and an altered vote does not verify.
    assert not verify_vote(load_validator_key(config, "validator_2"), votes[0])
    assert not verify_vote(key, dict(votes[1], decision="approve", reasons=[]))


def test_each_validator_signs_with_its_own_name_and_key(pool, config):
    tx = transaction()
    vote = pool.worker("validator_3").vote([tx])[0]
    assert vote["validator_id"] == "validator_3"
    assert verify_vote(load_validator_key(config, "validator_3"), vote)
    assert not verify_vote(load_validator_key(config, "validator_1"), vote)


def test_a_validator_without_its_key_refuses_to_start(config):
    key_file(config, "validator_2").unlink()
    with pytest.raises(RuntimeError) as raised:
        bound(VoteKey(), config, "validator_2")
    assert str(key_file(config, "validator_2")) in str(raised.value)


def test_a_key_file_that_is_not_a_key_refuses_to_start(config):
    key_file(config, "validator_2").write_text("not hex\n")
    with pytest.raises(RuntimeError, match="validator_2.key"):
        bound(VoteKey(), config, "validator_2")


# --- the batch -------------------------------------------------------------------------------


def test_the_batch_order_is_kept(validator):
    batch = [
        transaction(),
        transaction(source=account(status="frozen")),
        transaction("deposit"),
        transaction(destination=account("EUR")),
        transaction("withdrawal", amount=MAX_AMOUNT + 1),
        transaction("refund"),
    ]
    votes = validator.vote(batch)
    assert [vote["transaction_id"] for vote in votes] == [tx["id"] for tx in batch]
    assert decisions(votes) == [
        APPROVED,
        rejected(rules.ACCOUNT_FROZEN),
        APPROVED,
        rejected(rules.CURRENCY_MISMATCH),
        rejected(rules.LIMIT_EXCEEDED, rules.INSUFFICIENT_FUNDS),
        APPROVED,
    ]


def test_a_malformed_item_is_rejected_alone(validator, config):
    first, last = transaction(), transaction()
    no_amount = transaction()
    del no_amount["amount"]
    votes = validator.vote([first, no_amount, "garbage", {"id": 7}, last])
    assert decisions(votes) == [APPROVED] + [rejected(rules.MALFORMED_TRANSACTION)] * 3 + [
        APPROVED]
    assert [vote["transaction_id"] for vote in votes] == [
        first["id"], no_amount["id"], None, None, last["id"]]
    key = load_validator_key(config, "validator_1")
    assert all(verify_vote(key, vote) for vote in votes)


def test_an_empty_batch_gets_no_votes(validator):
    assert validator.vote([]) == []


@pytest.mark.parametrize("argument", [None, {"id": "x"}, "batch", 3])
def test_only_a_call_that_is_not_a_list_is_refused(validator, argument):
    with pytest.raises(ValidationFailed):
        validator.vote(argument)


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
    outcomes = [vote[0]["decision"] for vote in votes]
    assert outcomes.count("approve") == DAILY_LIMIT // 2_000
    assert all(vote[0]["reasons"] in ([], [rules.LIMIT_EXCEEDED]) for vote in votes)


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


# --- compliance ------------------------------------------------------------------------------


def test_the_configured_lists_block_accounts_and_users(pool, config):
    bad_account, bad_user = account(), new_id()
    config["validators"]["blocked_accounts"] = "{}, {}".format(new_id(), bad_account["id"])
    config["validators"]["blocked_users"] = bad_user
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
    key = load_validator_key(config, "validator_1")
    assert all(verify_vote(key, vote) for vote in votes)
    assert validator.voter.store.breaker.state == "open"


# --- a batch judged in order -------------------------------------------------------------


def test_an_item_sees_the_money_the_approved_items_before_it_moved(validator):
    empty, payee = account(balance=0), account(balance=0)
    # Money in, then out of the same account: only in this order is there enough.
    fund = transaction("transfer", 500, source=account(balance=500), destination=empty)
    spend = transaction("transfer", 400, source=dict(empty), destination=payee)
    assert decisions(validator.vote([fund, spend])) == [APPROVED, APPROVED]
    assert decisions(validator.vote([dict(spend, id=new_id()), dict(fund, id=new_id())])) == [
        rejected("insufficient_funds"), APPROVED]


def test_two_items_cannot_spend_the_same_money(validator):
    source = account(balance=1_000)
    first = transaction("transfer", 700, source=source)
    second = transaction("transfer", 700, source=dict(source))
    assert decisions(validator.vote([first, second])) == [
        APPROVED, rejected("insufficient_funds")]


def test_a_rejected_item_moves_nothing_for_the_items_after_it(validator):
    source = account(balance=1_000)
    too_much = transaction("transfer", 5_000, source=source)
    fits = transaction("transfer", 1_000, source=dict(source))
    assert decisions(validator.vote([too_much, fits])) == [
        rejected("insufficient_funds"), APPROVED]


def test_a_hold_reserves_money_for_the_items_after_it(validator):
    payer = account(balance=1_000)
    hold = dict(transaction("payment", 800, source=payer), hold=True)
    after = transaction("transfer", 300, source=dict(payer))
    assert decisions(validator.vote([hold, after])) == [
        APPROVED, rejected("insufficient_funds")]


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
