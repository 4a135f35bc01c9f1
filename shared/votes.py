"""Validator votes: each validator signs its votes with its own Ed25519 key, one signature
per vote round.

A vote says a validator approved or rejected one transaction, and why. A validator answers
a round (a batch of transactions) with its votes and one signature over all of them: the
signature covers the validator id, the key id and the SHA-256 of every vote's canonical
line (transaction id, validator id, decision, sorted reasons), in order. So no vote can be
altered, dropped, added, replayed for another transaction or passed off as another
validator's, and a round of 1,000 votes costs one signature and one verification, not a
thousand (docs/keys.md has the figures). Each validator holds only its private key
(``<keys_dir>/validator_N.key``); the transactions service holds only the public keys
(``validator_N.pub.json``), so a compromised transactions process can check votes but
never make one. The transactions service keeps each counted round (its signature and its
votes' line hashes) beside the transactions, so any stored vote can be verified later
(``verify_recorded_vote``).

A public key file lists the keys a validator's votes may be signed with, each with
its id and the end of its validity (``valid_until``, none for the current key). A
rotation (``rotate_validator_key``, `paysys keys rotate`) makes a new private key and
keeps the old public key beside the new one for a grace period, so votes signed before
the validator picked up its new key still count; after it they do not. docs/keys.md
says who holds which key and how each is rotated.
"""
import base64
import binascii
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from shared.config import validator_names
from shared.settings import load
from shared.shared_settings import SharedSettings

log = logging.getLogger(__name__)

APPROVE, REJECT = "approve", "reject"
# Domain separation: a vote's signature can never pass for any other message signed
# with the same kind of key (an access token, a later vote format).
DOMAIN = b"paysys-vote-v3"
ROUND_DOMAIN = b"paysys-vote-round-v3"
LEAF_BYTES = 32  # a SHA-256
PUBLIC_SUFFIX = ".pub.json"
# A key id is a prefix of the public key's SHA-256: short on the wire, and a vote
# names the key to verify it with, so verification tries one key, not every one.
KEY_ID_BYTES = 8
# The key files are read again when they change; looking costs a stat, done at most
# this often, and at once for a vote naming a key not seen yet (a stat costs less than
# the signature check a forger would otherwise make us do).
RELOAD_CHECK_S = 1.0


def keys_dir(config):
    """The validators' key directory of ``config`` (config.yml as a dict), read through
    the shared settings model."""
    return load(SharedSettings, config).validator_keys_path


def key_file(config, validator_id):
    """The validator's private key: only that validator reads it."""
    return keys_dir(config) / "{}.key".format(validator_id)


def public_key_file(config, validator_id):
    """The validator's public keys with their validity: what the transactions service reads."""
    return keys_dir(config) / "{}{}".format(validator_id, PUBLIC_SUFFIX)


def _b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _raw_public(public_key):
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id_of(public_key):
    return hashlib.sha256(_raw_public(public_key)).hexdigest()[:2 * KEY_ID_BYTES]


def _message(transaction_id, validator_id, decision, reasons):
    return b"\n".join([DOMAIN, str(transaction_id).encode("utf-8"),
                       str(validator_id).encode("utf-8"), str(decision).encode("utf-8"),
                       ",".join(sorted(reasons)).encode("utf-8")])


# --- signing (a validator) ---------------------------------------------------------------------


@dataclass(frozen=True)
class SigningKey:
    """A validator's private key and the id its votes name."""
    key_id: str
    private_key: Ed25519PrivateKey

    @classmethod
    def generate(cls):
        private_key = Ed25519PrivateKey.generate()
        return cls(key_id_of(private_key.public_key()), private_key)

    @classmethod
    def from_pem(cls, data):
        """ValueError unless ``data`` is an unencrypted PEM Ed25519 private key."""
        try:
            private_key = serialization.load_pem_private_key(data, password=None)
        except (TypeError, ValueError) as error:
            raise ValueError("not a PEM private key: {}".format(error)) from None
        if not isinstance(private_key, Ed25519PrivateKey):
            raise ValueError("not an Ed25519 key")
        return cls(key_id_of(private_key.public_key()), private_key)

    def pem(self):
        return self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption())

    def public_entry(self, valid_until_s=None):
        return {"key_id": self.key_id,
                "public_key": _b64(_raw_public(self.private_key.public_key())),
                "valid_until": _rfc3339(valid_until_s) if valid_until_s is not None else None}


def vote_leaf(transaction_id, validator_id, decision, reasons):
    """The SHA-256 of one vote's canonical line: what a round's signature covers of it."""
    return hashlib.sha256(_message(transaction_id, validator_id, decision,
                                   reasons)).digest()


def _round_message(validator_id, key_id, leaves):
    """What a round's signature signs: the validator, its key, how many votes and the
    SHA-256 of their line hashes in order."""
    return b"\n".join([ROUND_DOMAIN, str(validator_id).encode("utf-8"),
                       str(key_id).encode("utf-8"), str(len(leaves) // LEAF_BYTES).encode(),
                       hashlib.sha256(leaves).digest()])


def sign_round(key, validator_id, decisions):
    """A validator's answer to a vote round, as it travels: ``{validator_id, key_id,
    signature, votes: [{transaction_id, decision, reasons}]}``, one vote per
    ``(transaction_id, decision, reasons)`` of ``decisions``, in order."""
    votes = [{"transaction_id": transaction_id, "decision": decision,
              "reasons": sorted(set(reasons))}
             for transaction_id, decision, reasons in decisions]
    leaves = b"".join(vote_leaf(vote["transaction_id"], validator_id, vote["decision"],
                                vote["reasons"]) for vote in votes)
    signature = key.private_key.sign(_round_message(validator_id, key.key_id, leaves))
    return {"validator_id": validator_id, "key_id": key.key_id,
            "signature": _b64(signature), "votes": votes}


def load_validator_key(config, validator_id):
    """The validator's ``SigningKey``; FileNotFoundError, or ValueError for a file that
    holds no Ed25519 private key."""
    return SigningKey.from_pem(key_file(config, validator_id).read_bytes())


# --- the key files (`paysys keys`) -------------------------------------------------------------


def _rfc3339(seconds):
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat().replace("+00:00", "Z")


def _seconds(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _write_atomically(path, data, mode):
    """Readers (a process reloading its keys) see the old file or the new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".new")
    temporary.write_bytes(data)
    temporary.chmod(mode)
    os.replace(temporary, path)


def _public_document(validator_id, entries):
    return (json.dumps({"validator_id": validator_id, "keys": entries}, indent=2) + "\n").encode()


def read_public_entries(path):
    """The entries of a public key file (``[]`` if there is none)."""
    try:
        return json.loads(path.read_text())["keys"]
    except FileNotFoundError:
        return []


def ensure_validator_keys(config):
    """Give each validator of the pool a signing key and a public key file listing it.
    A key file from before Ed25519 (a hex HMAC secret) is replaced: nothing verifies it
    any more. The names created or replaced."""
    created = []
    for validator_id in validator_names(config):
        path = key_file(config, validator_id)
        try:
            key = SigningKey.from_pem(path.read_bytes())
        except (FileNotFoundError, ValueError):
            key = SigningKey.generate()
            _write_atomically(path, key.pem(), 0o600)
            created.append(validator_id)
        public_path = public_key_file(config, validator_id)
        entries = read_public_entries(public_path)
        if key.key_id not in [entry["key_id"] for entry in entries]:
            entries = [entry for entry in entries if entry.get("valid_until")]
            _write_atomically(public_path, _public_document(
                validator_id, [key.public_entry()] + entries), 0o644)
    return created


@dataclass(frozen=True)
class Rotation:
    validator_id: str
    old_key_id: str
    new_key_id: str
    old_valid_until: str


def rotate_validator_key(config, validator_id, grace_s, now_s=None):
    """A new signing key for ``validator_id``. Its current key stays valid ``grace_s``
    more seconds (0: refused at once, a revocation); keys already expired are dropped.

    The public file is written first: the transactions service accepts the new key before
    the validator can sign with it."""
    if validator_id not in validator_names(config):
        raise ValueError("{} is not a validator of the pool ({})".format(
            validator_id, ", ".join(validator_names(config))))
    now_s = time.time() if now_s is None else now_s
    old = load_validator_key(config, validator_id)
    new = SigningKey.generate()
    valid_until_s = now_s + max(0, grace_s)
    kept = []
    for entry in read_public_entries(public_key_file(config, validator_id)):
        if entry["key_id"] == old.key_id:
            entry = dict(entry, valid_until=_rfc3339(valid_until_s))
        elif not entry.get("valid_until") or _seconds(entry["valid_until"]) <= now_s:
            continue  # expired already, or a stray current key that is not the validator's
        kept.append(entry)
    if old.key_id not in [entry["key_id"] for entry in kept]:
        kept.append(old.public_entry(valid_until_s))
    _write_atomically(public_key_file(config, validator_id),
                      _public_document(validator_id, [new.public_entry()] + kept), 0o644)
    _write_atomically(key_file(config, validator_id), new.pem(), 0o600)
    return Rotation(validator_id, old.key_id, new.key_id, _rfc3339(valid_until_s))


# --- verifying (the transactions service) -------------------------------------------------------


@dataclass(frozen=True)
class PublicKey:
    key_id: str
    key: Ed25519PublicKey
    valid_until_s: float = None  # None: no end


def parse_public_entries(entries):
    """``{key_id: PublicKey}`` of a public key file's entries; ValueError if malformed."""
    keys = {}
    for entry in entries:
        try:
            key = Ed25519PublicKey.from_public_bytes(_unb64(entry["public_key"]))
            until = entry.get("valid_until")
            keys[entry["key_id"]] = PublicKey(entry["key_id"], key,
                                              _seconds(until) if until else None)
        except (KeyError, TypeError, ValueError, binascii.Error) as error:
            raise ValueError("a public key entry that is not one: {!r} ({})".format(
                entry, error)) from None
        if key_id_of(key) != entry["key_id"]:
            raise ValueError("key id {} does not name its key".format(entry["key_id"]))
    return keys


class PublicKeyring:
    """Every validator's accepted public keys; says why a vote does not verify.

    A round is verified once, with the one key it names: one Ed25519 verification
    (~0.07 ms) and a SHA-256 per vote, whatever the number of votes."""

    def __init__(self, keys, clock=time.time):
        self.keys = keys  # validator id -> {key id -> PublicKey}
        self.clock = clock

    @classmethod
    def of(cls, signing_keys):
        """The ring of the public halves of ``{validator id: SigningKey}`` (tests, tools)."""
        return cls({name: {key.key_id: PublicKey(key.key_id, key.private_key.public_key())}
                    for name, key in signing_keys.items()})

    def refresh(self, validator_id, force=False):
        """Hook for the file-backed ring: re-read a validator's keys if they changed."""

    def find_key(self, validator_id, key_id):
        """``(PublicKey, None)``, or ``(None, why not)`` when there is no such key."""
        self.refresh(validator_id)
        own = self.keys.get(validator_id)
        if not own:
            return None, "no public key"
        key = own.get(key_id)
        if key is None:
            # Perhaps rotated a moment ago: look at the file again (bounded), then judge.
            self.refresh(validator_id, force=True)
            key = self.keys.get(validator_id, {}).get(key_id)
            if key is None:
                return None, "unknown key"
        return key, None

    def check_round(self, answer):
        """``(leaves, None)`` if ``answer`` (what ``sign_round`` makes) is signed by a key
        of the validator it names, valid now; ``(None, why not)`` otherwise. ``leaves``:
        its votes' line hashes, in order, as one ``bytes``."""
        try:
            validator_id, key_id = answer["validator_id"], answer["key_id"]
            leaves = b"".join(vote_leaf(vote["transaction_id"], validator_id,
                                        vote["decision"], vote["reasons"])
                              for vote in answer["votes"])
        except (KeyError, TypeError, AttributeError):
            return None, "not a signed round"
        key, why = self.find_key(validator_id, key_id)
        if why:
            return None, why
        if key.valid_until_s is not None and self.clock() >= key.valid_until_s:
            return None, "retired key"
        if not _verifies(key, answer.get("signature"),
                         _round_message(validator_id, key_id, leaves)):
            return None, "bad signature"
        return leaves, None


def _verifies(key, signature, message):
    try:
        key.key.verify(_unb64(signature), message)
    except (InvalidSignature, TypeError, AttributeError, ValueError, binascii.Error):
        return False
    return True


def verify_recorded_vote(keyring, transaction_id, vote, signed_round):
    """None if a stored vote (``{validator_id, decision, reasons, key_id}``) is one of the
    votes of ``signed_round`` (``{validator_id, key_id, signature, leaves}``, as the
    transactions service keeps it) and that round's signature verifies with the key it
    names, whether or not that key is still valid; else why not. For audits: any vote
    the service counted can be checked long after."""
    leaf = vote_leaf(transaction_id, vote["validator_id"], vote["decision"], vote["reasons"])
    leaves = bytes(signed_round["leaves"])
    if (vote["validator_id"], vote.get("key_id")) != (signed_round["validator_id"],
                                                      signed_round["key_id"]):
        return "not this round's validator and key"
    if not any(leaves[i:i + LEAF_BYTES] == leaf
               for i in range(0, len(leaves), LEAF_BYTES)):
        return "not in the round"
    key, why = keyring.find_key(signed_round["validator_id"], signed_round["key_id"])
    if why:
        return why
    if not _verifies(key, signed_round["signature"], _round_message(
            signed_round["validator_id"], signed_round["key_id"], leaves)):
        return "bad signature"
    return None


class PublicKeyFiles(PublicKeyring):
    """The keyring of the pool's public key files, read again when a file changes."""

    def __init__(self, config, names, clock=time.time, monotonic=time.monotonic):
        super().__init__({}, clock)
        self.paths = {name: public_key_file(config, name) for name in names}
        self.monotonic = monotonic
        self._stamps = {}
        self._checked = {}  # validator id -> monotonic time of the last look
        missing = [str(path) for path in self.paths.values() if not path.exists()]
        if missing:
            raise FileNotFoundError("validator public keys missing: {}".format(
                ", ".join(missing)))
        for name in self.paths:
            self._load(name)
            self._checked[name] = self.monotonic()

    def _load(self, name):
        path = self.paths[name]
        try:
            stat = path.stat()
        except FileNotFoundError:
            log.warning("%s: public key file %s is gone; keeping the keys read before",
                        name, path)
            return
        stamp = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        if stamp == self._stamps.get(name):
            return
        try:
            self.keys[name] = parse_public_entries(read_public_entries(path))
        except ValueError as error:
            if name not in self.keys:
                raise
            log.error("%s: %s; keeping the keys read before", path, error)
        self._stamps[name] = stamp

    def refresh(self, validator_id, force=False):
        if validator_id not in self.paths:
            return
        now = self.monotonic()
        last = self._checked.get(validator_id)
        if not force and last is not None and now - last < RELOAD_CHECK_S:
            return
        self._checked[validator_id] = now
        self._load(validator_id)
