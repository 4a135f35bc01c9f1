"""The Idempotency-Key store against real PostgreSQL: claims, replays, conflicts, expiry."""
import uuid

import eventlet
import pytest
from sqlalchemy import text

from gateway.idempotency import (
    Begin, DeferredWrites, Finish, IdempotencyStore, Lease, fingerprint, parse_key,
)
from shared.db import DatabaseAccess
from shared.errors import BadRequest, Conflict, ValidationFailed
from tests.support.concurrency import run_together


@pytest.fixture
def store(engine):
    return IdempotencyStore(DatabaseAccess(engine, "gateway"), ttl_s=3600, lease_s=60)


@pytest.fixture
def user():
    return str(uuid.uuid4())


FIRST = fingerprint("create_account", "/v1/accounts", {"currency": "USD"})


def lapse(engine, user):
    """As if the lease holder's gateway had died long ago."""
    with engine.begin() as connection:
        connection.execute(text("UPDATE gateway.idempotency_keys SET locked_until = now() - "
                                "interval '1 second' WHERE user_id = :u"), {"u": user})


def stored(engine, user, key="k1"):
    with engine.connect() as connection:
        return connection.execute(text(
            "SELECT status_code, response_body FROM gateway.idempotency_keys "
            "WHERE user_id = :u AND key = :k"), {"u": user, "k": key}).one_or_none()


def test_the_first_use_claims_the_key_and_its_response_is_replayed(store, user):
    lease = store.begin(user, "k1", FIRST)
    assert isinstance(lease, Lease)
    store.finish(user, "k1", lease.token, 201, '{"id": "a"}', {
        "Location": "/v1/accounts/a", "Content-Type": "application/json",
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
    lease = store.begin(user, "k1", FIRST)
    store.finish(user, "k1", lease.token, 201, "{}", {})
    other = fingerprint("create_account", "/v1/accounts", {"currency": "EUR"})
    with pytest.raises(ValidationFailed) as raised:
        store.begin(user, "k1", other)
    assert raised.value.code == "idempotency_key_reused"


def test_the_fingerprint_ignores_key_order_but_not_values():
    assert fingerprint("t", "/p", {"a": 1, "b": 2}) == fingerprint("t", "/p", {"b": 2, "a": 1})
    assert fingerprint("t", "/p", {"a": 1}) != fingerprint("t", "/p", {"a": 2})
    assert fingerprint("t", "/p", {"a": 1}) != fingerprint("u", "/p", {"a": 1})


def test_a_5xx_releases_the_key_for_a_retry(store, user):
    lease = store.begin(user, "k1", FIRST)
    store.finish(user, "k1", lease.token, 503, "{}", {})
    assert isinstance(store.begin(user, "k1", FIRST), Lease)


def test_a_4xx_answer_is_kept_and_replayed(store, user):
    lease = store.begin(user, "k1", FIRST)
    store.finish(user, "k1", lease.token, 404, '{"code": "not_found"}', {})
    assert store.begin(user, "k1", FIRST).status == 404


def test_a_lapsed_lease_lets_a_retry_take_over(store, engine, user):
    first = store.begin(user, "k1", FIRST)
    lapse(engine, user)
    retry = store.begin(user, "k1", FIRST)
    assert isinstance(retry, Lease) and retry.token != first.token
    with pytest.raises(Conflict):
        store.begin(user, "k1", FIRST)  # and it holds the lease now


# --- fencing: a late first request cannot clobber its retry -------------------------------


def test_a_late_first_answer_does_not_overwrite_the_retrys(store, engine, user):
    first = store.begin(user, "k1", FIRST)
    lapse(engine, user)
    retry = store.begin(user, "k1", FIRST)
    store.finish(user, "k1", retry.token, 201, '{"by": "retry"}', {})
    store.finish(user, "k1", first.token, 201, '{"by": "first"}', {})  # it ran past its lease
    assert tuple(stored(engine, user)) == (201, '{"by": "retry"}')
    assert store.begin(user, "k1", FIRST).body == '{"by": "retry"}'


def test_a_late_first_failure_does_not_release_the_key_under_its_retry(store, engine, user):
    first = store.begin(user, "k1", FIRST)
    lapse(engine, user)
    store.begin(user, "k1", FIRST)  # the retry holds it and is still running
    store.release(user, "k1", first.token)  # the first one's 5xx, late
    with pytest.raises(Conflict):  # a third attempt must not run beside the retry
        store.begin(user, "k1", FIRST)


def test_two_retries_racing_for_a_take_over_one_wins(store, engine, user):
    store.begin(user, "k1", FIRST)
    lapse(engine, user)
    outcomes = run_together(*[lambda: store.begin(user, "k1", FIRST) for _ in range(2)])
    leases = [outcome for outcome in outcomes if isinstance(outcome, Lease)]
    conflicts = [outcome for outcome in outcomes if isinstance(outcome, Conflict)]
    assert (len(leases), len(conflicts)) == (1, 1), outcomes


def test_requests_begun_together_share_one_statement_each_gets_its_answer(store, engine, user):
    done = store.begin(user, "done", FIRST)
    store.finish(user, "done", done.token, 201, '{"ok": 1}', {})
    store.begin(user, "busy", FIRST)
    other = fingerprint("create_account", "/v1/accounts", {"currency": "EUR"})
    results = store.begin_many([
        Begin(user, "new", FIRST), Begin(user, "done", FIRST), Begin(user, "busy", FIRST),
        Begin(user, "done", other), Begin(user, "twice", FIRST), Begin(user, "twice", FIRST)])
    assert isinstance(results[0], Lease)
    assert results[1].body == '{"ok": 1}'
    assert isinstance(results[2], Conflict)
    assert isinstance(results[3], ValidationFailed)
    assert isinstance(results[4], Lease) and isinstance(results[5], Conflict)


def test_an_expired_key_may_be_used_afresh_and_is_purged(store, engine, user):
    for key in ("k1", "k2"):
        lease = store.begin(user, key, FIRST)
        store.finish(user, key, lease.token, 201, "{}", {})
    with engine.begin() as connection:
        connection.execute(text("UPDATE gateway.idempotency_keys SET expires_at = now() - "
                                "interval '1 second' WHERE user_id = :u"), {"u": user})
    other = fingerprint("create_account", "/v1/accounts", {"currency": "EUR"})
    assert isinstance(store.begin(user, "k1", other), Lease)  # expired: a new request
    assert store.purge_expired() >= 1
    with engine.connect() as connection:
        keys = connection.execute(text("SELECT key FROM gateway.idempotency_keys "
                                       "WHERE user_id = :u"), {"u": user}).scalars().all()
    assert keys == ["k1"]


def test_keys_belong_to_their_user(store, user):
    store.begin(user, "k1", FIRST)
    assert isinstance(store.begin(str(uuid.uuid4()), "k1", FIRST), Lease)


@pytest.mark.parametrize("value,required,code", [
    (None, True, "idempotency_key_required"), ("", True, "idempotency_key_required"),
    ("x" * 256, False, "idempotency_key_invalid"), ("caf\u00e9", False, "idempotency_key_invalid"),
    ("a\nb", False, "idempotency_key_invalid"),
    # Sent but empty where a key is optional: a malformed key, not none (the document says
    # 1-255 characters, so a fuzzer's empty key must not be accepted).
    ("", False, "idempotency_key_invalid"),
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


# --- the guard's deferred writes against a real PostgreSQL that goes away and comes back ---


@pytest.fixture
def database_behind_a_proxy(database_url):
    """The tests' database reached through the harness's TCP proxy, which the test cuts
    and heals: PostgreSQL out of reach for this store only, and then back."""
    from urllib.parse import urlsplit

    from harness.proxy import TcpProxy
    from shared.db import make_engine

    parts = urlsplit(database_url)
    proxy = TcpProxy((parts.hostname, parts.port or 5432)).start()
    proxied = parts._replace(netloc="{}@127.0.0.1:{}".format(parts.username, proxy.port))
    engine = make_engine({"url": proxied.geturl(), "connect_timeout_s": 1,
                          "statement_timeout_ms": 5000}, 2, "paysys-tests-proxied")
    yield proxy, DatabaseAccess(engine, "gateway")
    engine.dispose()
    proxy.stop()


def test_an_answer_the_database_missed_is_stored_by_the_background_flush_once_it_is_back(
        database_behind_a_proxy, store, user):
    from gateway.guard import IdempotencyKeys

    proxy, reachable = database_behind_a_proxy
    proxied = IdempotencyStore(reachable, ttl_s=3600, lease_s=60)
    deferred = DeferredWrites(lease_s=60)
    keys = IdempotencyKeys(proxied, deferred, lambda lane: eventlet.spawn(lane), 10, 1)
    keys.start()
    lease = keys.begin(Begin(user, "k1", FIRST))
    proxy.cut()  # PostgreSQL goes out of reach after the request began
    keys.finish(Finish(user, "k1", lease.token, 201, '{"id": "a"}', {}))  # never raises
    assert deferred.flush() == 1  # still away: kept for the next round
    with pytest.raises(Conflict):  # and meanwhile a retry is told to wait, not re-run
        store.begin(user, "k1", FIRST)
    proxy.heal()
    assert deferred.flush() == 0
    replay = store.begin(user, "k1", FIRST)  # through the direct connection
    assert (replay.status, replay.body) == (201, '{"id": "a"}')
