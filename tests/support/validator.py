"""Fixtures and helpers for the validator's tests (test_validator_*.py): workers with the
dependencies its providers build from config, each validator under its own name as ``paysys
serve validator_N`` runs it, a real Redis; and the accounts and transactions they vote on."""
import uuid

import pytest
import redis

from shared.votes import ensure_validator_keys
from tests.support.workers import ValidatorWorkers as Pool


DAILY_LIMIT = 10_000
MAX_AMOUNT = 1_000_000


@pytest.fixture
def config(service_config, tmp_path):
    service_config["validators"].update(keys_dir=str(tmp_path / "keys"), pool_size=3)
    service_config["validator"].update(max_amount_minor=MAX_AMOUNT, daily_limit_minor=DAILY_LIMIT,
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


def decisions(answer):
    """``[(decision, reasons)]`` of a validator's signed answer, in order."""
    return [(vote["decision"], vote["reasons"]) for vote in answer["votes"]]


APPROVED = ("approve", [])


def rejected(*reasons):
    return ("reject", sorted(reasons))
