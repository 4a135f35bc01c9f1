"""Password hashing: Argon2id at the chosen parameters, run off the eventlet hub."""
import eventlet
from argon2 import PasswordHasher

from services.auth import passwords

PASSWORD = "correct horse battery"


def test_a_hash_is_argon2id_at_the_owasp_parameters_and_verifies():
    password_hash = passwords.hash_password(PASSWORD)
    assert password_hash.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert passwords.verify_password(password_hash, PASSWORD) is True
    assert passwords.verify_password(password_hash, PASSWORD + "x") is False
    assert passwords.verify_password("not a hash", PASSWORD) is False
    assert passwords.needs_rehash(password_hash) is False


def test_a_hash_with_weaker_parameters_needs_rehash():
    weak = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1).hash(PASSWORD)
    assert passwords.verify_password(weak, PASSWORD) is True
    assert passwords.needs_rehash(weak) is True


def test_the_dummy_verification_never_succeeds():
    assert passwords.verify_against_dummy(PASSWORD) is False
    assert passwords.verify_against_dummy("") is False


def test_hashing_leaves_the_hub_free_for_other_greenthreads():
    """Run on the hub, Argon2's tens of milliseconds of CPU would stall every other worker
    and the AMQP heartbeats: other greenthreads must run while a hash is computed."""
    ticks, done = [], []

    def ticker():
        while not done:
            ticks.append(1)
            eventlet.sleep(0)

    ticking = eventlet.spawn(ticker)
    passwords.hash_password(PASSWORD)
    passwords.verify_password(passwords.hash_password(PASSWORD), PASSWORD)
    ticks_during_hashing = len(ticks)
    done.append(True)
    ticking.wait()
    assert ticks_during_hashing > 10
