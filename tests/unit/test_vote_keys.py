"""The validators' Ed25519 vote keys: made once, rotated with a grace period, revoked at once;
the transactions service holds the public keys alone and counts no vote that is forged,
signed with a retired key, or signed by one validator in another's name.

The key files are real files in a temporary key directory; the validator's key provider is
bound as a Nameko container binds it, and the transactions side is the very ``Ballot`` and
``PublicKeyFiles`` the service uses. tests/system/test_vote_keys.py does the same with
running processes."""
import base64
import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from services.transactions.quorum import NO_QUORUM, Ballot
from services.transactions.voting import count_answer
from services.validator.dependencies import VoteKey
from shared.config import load_config
from shared.votes import (
    PublicKeyFiles, SigningKey, ensure_validator_keys, key_file, load_validator_key,
    public_key_file, read_public_entries, rotate_validator_key, sign_round,
)
from tests.support.workers import bound

ROOT = Path(__file__).resolve().parents[2]
POOL = ("validator_1", "validator_2", "validator_3")
TX = "6e3f9a40-2b8c-4bd4-9d0e-0a4e8f7f1a11"
GRACE_S = 600


class Clock:
    """Wall and monotonic time a test moves by hand."""

    def __init__(self, now_s=1_800_000_000.0):
        self.now_s = now_s

    def __call__(self):
        return self.now_s


@pytest.fixture
def config(tmp_path):
    config = load_config()
    config["supervisor"]["run_dir"] = str(tmp_path / "run")
    config["validators"].update(keys_dir=str(tmp_path / "keys"), pool_size=3)
    ensure_validator_keys(config)
    return config


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def keyring(config, clock):
    return PublicKeyFiles(config, POOL, clock=clock, monotonic=clock)


def approve(key, validator_id, transaction_id=TX):
    """A validator's signed answer approving one transaction."""
    return sign_round(key, validator_id, [(transaction_id, "approve", [])])


def why_not(keyring, answer):
    return keyring.check_round(answer)[1]


def ballot_of(keyring, *answers):
    ballot = Ballot(TX, POOL)
    for answer in answers:
        count_answer({TX: ballot}, answer["validator_id"], answer, keyring)
    return ballot


# --- the key files ---------------------------------------------------------------------------


def test_each_validator_gets_a_private_key_and_a_public_file_of_its_own(config):
    ids = set()
    for name in POOL:
        key = load_validator_key(config, name)
        assert oct(key_file(config, name).stat().st_mode & 0o777) == "0o600"
        entries = read_public_entries(public_key_file(config, name))
        assert [(e["key_id"], e["valid_until"]) for e in entries] == [(key.key_id, None)]
        # The public file holds the 32-byte public key only, nothing private.
        assert len(base64.urlsafe_b64decode(entries[0]["public_key"] + "=")) == 32
        assert "PRIVATE" not in public_key_file(config, name).read_text()
        ids.add(key.key_id)
    assert len(ids) == 3
    assert ensure_validator_keys(config) == []  # made once


def test_a_key_from_before_ed25519_is_replaced(config):
    key_file(config, "validator_2").write_text("ab" * 32 + "\n")  # the old HMAC secret
    assert ensure_validator_keys(config) == ["validator_2"]
    key = load_validator_key(config, "validator_2")
    assert [e["key_id"] for e in read_public_entries(public_key_file(config, "validator_2"))] \
        == [key.key_id]


# --- votes that must not count ---------------------------------------------------------------


def test_a_vote_with_a_random_signature_is_not_counted(config, keyring):
    key = load_validator_key(config, "validator_1")
    forged = dict(approve(key, "validator_1"),
                  signature=base64.urlsafe_b64encode(os.urandom(64)).rstrip(b"=").decode())
    assert why_not(keyring, forged) == "bad signature"
    ballot = ballot_of(keyring, forged, approve(load_validator_key(config, "validator_2"),
                                                "validator_2"))
    assert list(ballot.counted) == ["validator_2"]
    assert ballot.close() == NO_QUORUM  # one approval of three, the forged one is none


def test_a_vote_signed_by_one_validator_claiming_to_be_another_is_not_counted(config, keyring):
    own = load_validator_key(config, "validator_3")
    claimed = load_validator_key(config, "validator_1")
    as_itself = approve(own, "validator_1")  # its own key id: not one of validator_1's
    naming_the_other = approve(SigningKey(claimed.key_id, own.private_key), "validator_1")
    assert why_not(keyring, as_itself) == "unknown key"
    assert why_not(keyring, naming_the_other) == "bad signature"
    ballot = ballot_of(keyring, as_itself, naming_the_other, approve(own, "validator_3"))
    assert list(ballot.counted) == ["validator_3"]


def test_garbage_in_an_answer_is_refused_not_an_error(config, keyring):
    answer = approve(load_validator_key(config, "validator_1"), "validator_1")
    for broken in ({"signature": "***"}, {"signature": None}, {"signature": "AA"}):
        assert why_not(keyring, dict(answer, **broken)) == "bad signature"
    for broken in ({"votes": [dict(answer["votes"][0], reasons=None)]}, {"votes": None},
                   {"votes": [None]}):
        assert why_not(keyring, dict(answer, **broken)) == "not a signed round"


# --- rotation --------------------------------------------------------------------------------


def test_during_the_grace_period_both_keys_count_and_after_it_only_the_new(
        config, keyring, clock):
    old = load_validator_key(config, "validator_2")
    rotation = rotate_validator_key(config, "validator_2", GRACE_S, now_s=clock.now_s)
    new = load_validator_key(config, "validator_2")
    assert (rotation.old_key_id, rotation.new_key_id) == (old.key_id, new.key_id)
    assert new.key_id != old.key_id

    clock.now_s += GRACE_S - 1
    assert why_not(keyring, approve(old, "validator_2")) is None
    assert why_not(keyring, approve(new, "validator_2")) is None
    assert list(ballot_of(keyring, approve(old, "validator_2")).counted) == ["validator_2"]

    clock.now_s += 1
    assert why_not(keyring, approve(old, "validator_2")) == "retired key"
    assert why_not(keyring, approve(new, "validator_2")) is None
    ballot = ballot_of(keyring, approve(old, "validator_2"),
                       approve(load_validator_key(config, "validator_1"), "validator_1"))
    assert list(ballot.counted) == ["validator_1"]
    assert ballot.close() == NO_QUORUM


def test_a_revoked_key_is_refused_from_the_next_look_at_the_files(config, keyring, clock):
    old = load_validator_key(config, "validator_1")
    rotate_validator_key(config, "validator_1", 0, now_s=clock.now_s)
    clock.now_s += 1  # the keyring looks at most once a second (RELOAD_CHECK_S)
    assert why_not(keyring, approve(old, "validator_1")) == "retired key"
    assert why_not(keyring, approve(load_validator_key(config, "validator_1"),
                                   "validator_1")) is None


def test_a_second_rotation_drops_the_keys_already_expired(config, clock):
    first = load_validator_key(config, "validator_3")
    rotate_validator_key(config, "validator_3", GRACE_S, now_s=clock.now_s)
    second = load_validator_key(config, "validator_3")
    rotate_validator_key(config, "validator_3", GRACE_S, now_s=clock.now_s + 2 * GRACE_S)
    third = load_validator_key(config, "validator_3")
    entries = read_public_entries(public_key_file(config, "validator_3"))
    assert [e["key_id"] for e in entries] == [third.key_id, second.key_id]
    assert first.key_id not in json.dumps(entries)


def test_a_new_key_counts_at_once_even_before_the_next_look_at_the_files(
        config, keyring, clock):
    # The keyring looked at the files a moment ago; a vote naming a key it has not seen
    # makes it look again rather than wait for its next look.
    rotate_validator_key(config, "validator_1", GRACE_S, now_s=clock.now_s)
    assert why_not(keyring, approve(load_validator_key(config, "validator_1"),
                                   "validator_1")) is None


def test_a_validator_not_of_the_pool_cannot_be_rotated(config):
    with pytest.raises(ValueError, match="validator_7"):
        rotate_validator_key(config, "validator_7", GRACE_S)


def test_the_validator_signs_with_its_new_key_within_a_second_of_the_rotation(config, clock):
    provider = bound(VoteKey(monotonic=clock), config, "validator_2")
    old = provider.get_dependency(None)
    rotate_validator_key(config, "validator_2", GRACE_S)
    assert provider.get_dependency(None) == old  # looked less than a second ago
    clock.now_s += 1
    assert provider.get_dependency(None).key_id == load_validator_key(
        config, "validator_2").key_id != old.key_id


def test_a_validator_keeps_its_key_when_the_new_file_is_unreadable(config, clock):
    provider = bound(VoteKey(monotonic=clock), config, "validator_2")
    old = provider.get_dependency(None)
    key_file(config, "validator_2").write_text("garbage")
    clock.now_s += 1
    assert provider.get_dependency(None) == old


# --- the command -----------------------------------------------------------------------------


def paysys(tmp_path, *args):
    env = dict(os.environ, PAYSYS_RUN_DIR=str(tmp_path / "run"),
               PAYSYS_VALIDATOR_KEYS_DIR=str(tmp_path / "keys"), PAYSYS_VALIDATORS="3",
               PAYSYS_VOTE_KEY_GRACE_S="120")
    return subprocess.run([sys.executable, "-m", "paysys.cli", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def test_paysys_keys_rotate_keeps_the_old_key_for_the_configured_grace(config, tmp_path):
    old = load_validator_key(config, "validator_2")
    done = paysys(tmp_path, "keys", "rotate", "validator_2")
    assert done.returncode == 0, done.stderr
    new = load_validator_key(config, "validator_2")
    assert new.key_id in done.stdout and old.key_id in done.stdout
    entries = {e["key_id"]: e["valid_until"]
               for e in read_public_entries(public_key_file(config, "validator_2"))}
    assert entries[new.key_id] is None
    valid_until = datetime.fromisoformat(entries[old.key_id].replace("Z", "+00:00"))
    grace_s = valid_until.timestamp() - public_key_file(config, "validator_2").stat().st_mtime
    assert 110 < grace_s <= 121  # PAYSYS_VOTE_KEY_GRACE_S, counted from the rotation


def test_paysys_keys_revoke_and_unknown_names(config, tmp_path):
    assert paysys(tmp_path, "keys", "revoke", "validator_1").returncode == 0
    entries = read_public_entries(public_key_file(config, "validator_1"))
    assert len(entries) == 2 and entries[1]["valid_until"] is not None
    refused = paysys(tmp_path, "keys", "rotate", "validator_9")
    assert refused.returncode == 2 and "validator_9" in refused.stderr
    assert paysys(tmp_path, "keys", "rotate").returncode == 2
