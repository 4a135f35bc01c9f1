"""The validator's ``vote`` RPC: real signing keys (from its provider) and a real Redis.
A batch's votes are signed at once by each validator's own Ed25519 key and verify with its
public key file,
a batch is answered in its order with a malformed item rejected alone, and each item is
judged on the money the approved items before it moved."""
import pytest

from services.validator import rules
from services.validator.dependencies import VoteKey
from shared.errors import ValidationFailed
from shared.votes import PublicKeyFiles, key_file
from tests.support.validator import (  # noqa: F401 - fixtures
    APPROVED,
    MAX_AMOUNT,
    account,
    config,
    decisions,
    new_id,
    pool,
    rejected,
    transaction,
    validator,
)
from tests.support.workers import bound


# --- signing ---------------------------------------------------------------------------------


def public_keys(config):
    """What the transactions service verifies with: the pool's public key files."""
    return PublicKeyFiles(config, ("validator_1", "validator_2", "validator_3"))


def test_votes_are_signed_by_this_validator_and_verify(validator, config):
    good, poor = transaction(), transaction(source=account(balance=10))
    answer = validator.vote([good, poor])
    assert [vote["transaction_id"] for vote in answer["votes"]] == [good["id"], poor["id"]]
    assert answer["validator_id"] == "validator_1"
    assert decisions(answer) == [APPROVED, rejected(rules.INSUFFICIENT_FUNDS)]
    keyring = public_keys(config)
    assert keyring.check_round(answer)[1] is None
    # Passed off as another validator's, or altered, it does not verify.
    assert keyring.check_round(dict(answer, validator_id="validator_2"))[1] == "unknown key"
    altered = dict(answer, votes=[answer["votes"][0], dict(answer["votes"][1],
                                                           decision="approve", reasons=[])])
    assert keyring.check_round(altered)[1] == "bad signature"


def test_each_validator_signs_with_its_own_name_and_key(pool, config):
    answer = pool.worker("validator_3").vote([transaction()])
    assert answer["validator_id"] == "validator_3"
    keyring = public_keys(config)
    assert keyring.check_round(answer)[1] is None
    assert keyring.check_round(dict(answer, validator_id="validator_1"))[1] == "unknown key"
    # One signature (64 bytes) for the whole answer, naming its key (8 bytes).
    assert len(answer["signature"]) == 86 and len(answer["key_id"]) == 16


def test_a_validator_without_its_key_refuses_to_start(config):
    key_file(config, "validator_2").unlink()
    with pytest.raises(RuntimeError) as raised:
        bound(VoteKey(), config, "validator_2")
    assert str(key_file(config, "validator_2")) in str(raised.value)


def test_a_key_file_that_is_not_a_key_refuses_to_start(config):
    # An HMAC secret of the old format, say: nothing verifies its votes any more.
    key_file(config, "validator_2").write_text("ab" * 32 + "\n")
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
    assert [vote["transaction_id"] for vote in votes["votes"]] == [tx["id"] for tx in batch]
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
    assert [vote["transaction_id"] for vote in votes["votes"]] == [
        first["id"], no_amount["id"], None, None, last["id"]]
    assert public_keys(config).check_round(votes)[1] is None


def test_an_empty_batch_gets_no_votes(validator):
    assert validator.vote([])["votes"] == []


@pytest.mark.parametrize("argument", [None, {"id": "x"}, "batch", 3])
def test_only_a_call_that_is_not_a_list_is_refused(validator, argument):
    with pytest.raises(ValidationFailed):
        validator.vote(argument)


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
