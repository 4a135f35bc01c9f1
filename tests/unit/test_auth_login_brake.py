"""The login brake of the auth service against real PostgreSQL: per (e-mail address, client
IP), exponential backoff answered with RateLimited (429 + Retry-After at the gateway)."""
import uuid
from unittest.mock import Mock

import pytest
from nameko.containers import ServiceContainer
from nameko.exceptions import deserialize, serialize
from nameko.testing.services import worker_factory
from nameko.timer import Timer
from sqlalchemy import text

from services.auth import login_brake, passwords
from services.auth.dependencies import LoginBrake
from services.auth.service import AuthService
from services.auth.settings import AuthSettings
from shared.config import load_config
from shared.db import DatabaseAccess
from shared.errors import RateLimited, Unauthorized
from shared.settings import load
from tests.support.auth import (  # noqa: F401 - fixtures
    PASSWORD,
    brake,
    config,
    issuer,
    register,
    service,
)
from tests.support.concurrency import run_together

HERE, THERE = "203.0.113.7", "198.51.100.20"
WRONG = "not the password at all"


@pytest.fixture(autouse=True)
def no_counts(engine):
    with engine.begin() as connection:
        connection.execute(text("TRUNCATE auth.login_attempts"))


def attempt(service, email, password, client_ip=HERE):
    """``200`` with the tokens, ``401``, or ``(429, retry_after_s)``."""
    try:
        service.login(email, password, client_ip)
    except RateLimited as limited:
        return 429, limited.retry_after_s
    except Unauthorized:
        return 401
    return 200


def time_passes(engine, seconds):
    """Every count of the brake ``seconds`` older, as if that much time had gone by."""
    with engine.begin() as connection:
        connection.execute(text(
            "UPDATE auth.login_attempts SET "
            "blocked_until = blocked_until - make_interval(secs => :s), "
            "last_attempt_at = last_attempt_at - make_interval(secs => :s)"), {"s": seconds})


def counts(engine):
    with engine.connect() as connection:
        return connection.execute(text(
            "SELECT email_hash, client, failures FROM auth.login_attempts ORDER BY client")).all()


def test_bad_passwords_from_one_ip_wait_longer_and_longer_and_the_owner_elsewhere_logs_in(
        service, engine):
    email = register(service)["email"]
    assert [attempt(service, email, WRONG) for _ in range(5)] == [401] * 5
    waits = []
    for expected in (1, 2, 4, 8, 16):
        assert attempt(service, email, WRONG) == (429, expected)
        assert attempt(service, email, WRONG) == (429, expected)  # still: nothing counted
        waits.append(expected)
        time_passes(engine, expected)
        assert attempt(service, email, WRONG) == 401  # the wait is over: one more check
    assert waits == [1, 2, 4, 8, 16]
    # Even the right password waits here, unchecked.
    assert attempt(service, email, PASSWORD) == (429, 32)
    # The owner, from anywhere else, logs in at once.
    assert attempt(service, email, PASSWORD, client_ip=THERE) == 200
    # Once the wait is over, the right password here logs in too, and starts afresh.
    time_passes(engine, 32)
    assert attempt(service, email, PASSWORD) == 200
    assert [row.client for row in counts(engine)] == []
    assert [attempt(service, email, WRONG) for _ in range(5)] == [401] * 5


def test_a_blocked_attempt_checks_no_password(service, engine, monkeypatch):
    email = register(service)["email"]
    for _ in range(5):
        attempt(service, email, WRONG)
    checked = []
    real_verify = passwords._verify
    monkeypatch.setattr(passwords, "_verify", lambda *args: checked.append(1) or
                        real_verify(*args))
    assert attempt(service, email, PASSWORD)[0] == 429
    assert checked == []


def test_attempts_in_parallel_get_no_more_checks_than_attempts_in_turn(engine, issuer):
    patient = login_brake.Settings(attempts_before_backoff=5, backoff_base_s=60,
                                   backoff_cap_s=60, forget_after_s=86400)
    service = worker_factory(AuthService, db=DatabaseAccess(engine, "auth"), tokens=issuer,
                             brake=patient)
    email = register(service)["email"]
    outcomes = run_together(*[lambda: service.login(email, WRONG, HERE) for _ in range(16)])
    assert sum(isinstance(o, Unauthorized) for o in outcomes) == 5, outcomes
    assert sum(isinstance(o, RateLimited) for o in outcomes) == 11, outcomes
    assert counts(engine)[0].failures == 5


def test_pairs_are_counted_apart(service):
    alice, bob = register(service)["email"], register(service)["email"]
    for _ in range(5):
        attempt(service, alice, WRONG)
    assert attempt(service, alice, WRONG)[0] == 429
    assert attempt(service, alice.upper(), WRONG)[0] == 429  # one address, however written
    assert attempt(service, bob, WRONG) == 401  # another address from the same IP
    assert attempt(service, alice, WRONG, client_ip=THERE) == 401  # another IP


def test_unknown_addresses_are_braked_alike(service):
    # The answers must not tell which addresses have an account.
    unknown = "nobody-{}@example.com".format(uuid.uuid4().hex)
    known = register(service)["email"]
    for email in (unknown, known):
        assert [attempt(service, email, WRONG) for _ in range(5)] == [401] * 5
        assert attempt(service, email, WRONG) == (429, 1)


def test_an_ipv6_client_counts_by_its_64(service):
    email = register(service)["email"]
    for host in range(1, 6):
        assert attempt(service, email, WRONG, client_ip="2001:db8:1:2::{}".format(host)) == 401
    assert attempt(service, email, WRONG, client_ip="2001:db8:1:2:ffff::9")[0] == 429
    assert attempt(service, email, WRONG, client_ip="2001:db8:1:3::1") == 401
    assert login_brake.client_key("::ffff:198.51.100.20") == "198.51.100.20"
    assert login_brake.client_key(None) == "" and login_brake.client_key(5) == ""


def test_a_pair_quiet_for_long_starts_afresh_and_is_purged(service, engine):
    email = register(service)["email"]
    for _ in range(6):
        attempt(service, email, WRONG)
    time_passes(engine, 86400 + 1)  # auth.login_forget_after_s
    assert attempt(service, email, WRONG) == 401
    assert counts(engine)[0].failures == 1  # counted from scratch
    time_passes(engine, 86400 + 1)
    attempt(service, "other-{}@example.com".format(uuid.uuid4().hex), WRONG)  # fresh: kept
    assert service.forget_quiet_logins() == 1
    assert len(counts(engine)) == 1


def test_the_counts_name_no_one(service, engine):
    email = register(service)["email"]
    attempt(service, email, WRONG)
    with engine.connect() as connection:
        dump = "\n".join(connection.execute(
            text("SELECT a::text FROM auth.login_attempts a")).scalars())
    assert email not in dump and email.split("@")[0] not in dump
    assert HERE in dump


def test_the_wait_crosses_rpc_with_its_retry_after(service):
    email = register(service)["email"]
    for _ in range(5):
        attempt(service, email, WRONG)
    with pytest.raises(RateLimited) as raised:
        service.login(email, WRONG, HERE)
    received = deserialize(serialize(raised.value))
    assert type(received) is RateLimited and received.retry_after_s == 1
    assert "try again in 1 s" in str(received)


def test_settings_come_from_the_auth_section_and_refuse_what_cannot_work(config):
    def brake(**changes):
        section = dict(config["auth"], **changes)
        return login_brake.Settings.from_settings(
            load(AuthSettings, dict(config, auth=section)).auth)

    assert brake() == login_brake.Settings(5, 1.0, 900.0, 86400.0)  # config.yml's defaults
    configured = brake(login_attempts_before_backoff="3", login_backoff_base_s=0.5,
                       login_backoff_cap_s=10)
    assert (configured.attempts_before_backoff, configured.backoff_base_s,
            configured.backoff_cap_s, configured.forget_after_s) == (3, 0.5, 10.0, 86400.0)
    assert [configured.wait_s(n) for n in (1, 2, 3, 4, 5, 6, 9)] == [0, 0, 0.5, 1, 2, 4, 10]
    for changes in ({"login_attempts_before_backoff": 0}, {"login_backoff_base_s": "x"},
                    {"login_backoff_cap_s": 100, "login_forget_after_s": 10}):
        with pytest.raises(ValueError, match="auth.login_"):
            brake(**changes)
    container = Mock(config=dict(config, auth=dict(config["auth"], login_backoff_base_s=-1)))
    with pytest.raises(ValueError):  # the service does not start
        LoginBrake().bind(container, "brake").setup()


def test_quiet_pairs_are_forgotten_by_a_timer():
    container = ServiceContainer(AuthService, load_config())
    (purge,) = [entry for entry in container.entrypoints if isinstance(entry, Timer)]
    assert purge.method_name == "forget_quiet_logins" and purge.interval == 600
