"""The Idempotency-Key store against real PostgreSQL: claims, replays, conflicts, expiry."""
import uuid

import pytest
from sqlalchemy import text

from gateway.idempotency import DeferredWrites, IdempotencyStore, fingerprint, parse_key
from shared.db import DatabaseAccess
from shared.errors import BadRequest, Conflict, ValidationFailed


@pytest.fixture
def store(engine):
    return IdempotencyStore(DatabaseAccess(engine, "gateway"), ttl_s=3600, lease_s=60)


@pytest.fixture
def user():
    return str(uuid.uuid4())


FIRST = fingerprint("create_account", "/v1/accounts", {"currency": "USD"})


def test_the_first_use_claims_the_key_and_its_response_is_replayed(store, user):
    assert store.begin(user, "k1", FIRST) is None
    store.finish(user, "k1", 201, '{"id": "a"}', {"Location": "/v1/accounts/a",
                                                  "Content-Type": "application/json",
                                                  "X-Request-ID": "not kept"})
    replay = store.begin(user, "k1", FIRST)
    assert (replay.status, replay.body) == (201, '{"id": "a"}')
    assert replay.headers == {"Location": "/v1/accounts/a", "Content-Type": "application/json"}


def test_a_key_in_flight_is_409(store, user):
    store.begin(user, "k1", FIRST)
    with pytest.raises(Conflict) as raised:
        store.begin(user, "k1", FIRST)
    assert raised.value.code == "idempotency_key_in_flight"


def test_a_key_used_for_another_request_is_422(store, user):
    store.begin(user, "k1", FIRST)
    store.finish(user, "k1", 201, "{}", {})
    other = fingerprint("create_account", "/v1/accounts", {"currency": "EUR"})
    with pytest.raises(ValidationFailed) as raised:
        store.begin(user, "k1", other)
    assert raised.value.code == "idempotency_key_reused"


def test_the_fingerprint_ignores_key_order_but_not_values():
    assert fingerprint("t", "/p", {"a": 1, "b": 2}) == fingerprint("t", "/p", {"b": 2, "a": 1})
    assert fingerprint("t", "/p", {"a": 1}) != fingerprint("t", "/p", {"a": 2})
    assert fingerprint("t", "/p", {"a": 1}) != fingerprint("u", "/p", {"a": 1})


def test_a_5xx_releases_the_key_for_a_retry(store, user):
    store.begin(user, "k1", FIRST)
    store.finish(user, "k1", 503, "{}", {})
    assert store.begin(user, "k1", FIRST) is None


def test_a_4xx_answer_is_kept_and_replayed(store, user):
    store.begin(user, "k1", FIRST)
    store.finish(user, "k1", 404, '{"code": "not_found"}', {})
    assert store.begin(user, "k1", FIRST).status == 404


def test_a_lapsed_lease_lets_a_retry_take_over(store, engine, user):
    store.begin(user, "k1", FIRST)
    with engine.begin() as connection:  # the first request's gateway died long ago
        connection.execute(text("UPDATE gateway.idempotency_keys SET locked_until = now() - "
                                "interval '1 second' WHERE user_id = :u"), {"u": user})
    assert store.begin(user, "k1", FIRST) is None
    with pytest.raises(Conflict):
        store.begin(user, "k1", FIRST)  # and it holds the lease now


def test_an_expired_key_may_be_used_afresh_and_is_purged(store, engine, user):
    store.begin(user, "k1", FIRST)
    store.finish(user, "k1", 201, "{}", {})
    store.begin(user, "k2", FIRST)
    store.finish(user, "k2", 201, "{}", {})
    with engine.begin() as connection:
        connection.execute(text("UPDATE gateway.idempotency_keys SET expires_at = now() - "
                                "interval '1 second' WHERE user_id = :u"), {"u": user})
    other = fingerprint("create_account", "/v1/accounts", {"currency": "EUR"})
    assert store.begin(user, "k1", other) is None  # expired: a new request, not a 422
    assert store.purge_expired() >= 1
    with engine.connect() as connection:
        keys = connection.execute(text("SELECT key FROM gateway.idempotency_keys "
                                       "WHERE user_id = :u"), {"u": user}).scalars().all()
    assert keys == ["k1"]


def test_keys_belong_to_their_user(store, user):
    store.begin(user, "k1", FIRST)
    assert store.begin(str(uuid.uuid4()), "k1", FIRST) is None


@pytest.mark.parametrize("value,required,code", [
    (None, True, "idempotency_key_required"), ("", True, "idempotency_key_required"),
    ("x" * 256, False, "idempotency_key_invalid"), ("caf\u00e9", False, "idempotency_key_invalid"),
    ("a\nb", False, "idempotency_key_invalid"),
])
def test_malformed_or_missing_keys_are_400(value, required, code):
    with pytest.raises(BadRequest) as raised:
        parse_key(value, required)
    assert raised.value.code == code


def test_a_missing_optional_key_is_none_and_a_good_one_is_kept():
    assert parse_key(None, required=False) is None
    assert parse_key("order-42 retry#1", required=True) == "order-42 retry#1"


# --- writes deferred while the database is away ----------------------------------------


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_a_write_the_database_missed_is_made_once_it_is_back():
    clock, made, database = Clock(), [], {"up": False}

    def write():
        if not database["up"]:
            raise OSError("PostgreSQL is away")
        made.append("released")

    deferred = DeferredWrites(lease_s=60, clock=clock)
    deferred.add(write)
    assert deferred.flush() == 1 and made == []
    database["up"] = True
    clock.now += 5
    assert deferred.flush() == 0 and made == ["released"]
    assert deferred.flush() == 0 and made == ["released"]  # made once


def test_a_write_older_than_the_lease_is_dropped():
    clock, made = Clock(), []
    deferred = DeferredWrites(lease_s=60, clock=clock)
    deferred.add(lambda: made.append("late"))
    clock.now += 61
    assert deferred.flush() == 0 and made == []
