"""Test-only faults: what the recovery tests (tests/system/test_recovery.py) switch on in a
running system to make the failures recovery exists for — a ledger that refuses to post, a
posting committed whose reply never arrives, a slow validator, a forged vote.

Off unless the environment variable ``PAYSYS_TEST_FAULTS_FILE`` names a file. config.yml
does not read it, and neither ``make up`` nor docker-compose.yml sets it: only a test
sandbox made with ``harness.sandbox.System(faults=True)`` does. Off, each hook point costs
one attribute check (``faults.armed``) and nothing else.

The file holds JSON, one object per process name, and is read again whenever it changes,
so a test switches faults on and off while the system runs (``System.set_faults``):

    {"ledger": {"refuse_posting": true}}             # 503 before anything is posted
    {"ledger": {"lose_posting_reply_ms": 6000}}      # commit, then answer this much later
    {"validator_2": {"vote_delay_ms": 5000}}         # vote this much later
    {"validator_3": {"forge_votes": "key"}}          # sign with a key that is not its own
    {"validator_3": {"forge_votes": "as:validator_1"}}  # claim another validator's name
    {"validator_3": {"forge_votes": "key_file:PATH"}}   # sign with the private key in PATH
                                                    # (one retired by a rotation)
    {"gateway": {"hold_answer": {"key": "K", "ms": 4000}}}  # the first request with
                                                    # Idempotency-Key K answers this late

A setting is read when a call starts: a call already delayed stays delayed after the
fault is switched off.
"""
import json
import os
from pathlib import Path

import eventlet

from shared.errors import ServiceUnavailable
from shared.votes import SigningKey, sign_round

ENV = "PAYSYS_TEST_FAULTS_FILE"
# Not any validator's key: what a vote signed by an impostor carries (made at first use).
_forged_key = []


def forged_key():
    if not _forged_key:
        _forged_key.append(SigningKey.generate())
    return _forged_key[0]


class Faults:
    """The faults a file asks for, read again when the file changes."""

    def __init__(self, path, sleep=eventlet.sleep):
        self.path = path
        self.sleep = sleep
        self._stamp = None
        self._faults = {}
        self._held = set()  # the Idempotency-Keys whose first answer was held

    def of(self, process):
        """The settings of ``process`` (``{}``: none)."""
        try:
            stat = os.stat(self.path)
            stamp = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        except FileNotFoundError:
            stamp = None
        if stamp != self._stamp:
            # A test replaces the file whole (write, then rename): never read half-written.
            faults = {}
            if stamp is not None:
                with open(self.path, encoding="utf-8") as file:
                    faults = json.load(file)
            self._faults, self._stamp = faults, stamp
        return self._faults.get(process) or {}

    def posting(self, process):
        """Before a posting: refuse it (``ServiceUnavailable``, nothing posted), or the
        seconds to hold the reply back once it has committed (0: none)."""
        settings = self.of(process)
        if settings.get("refuse_posting"):
            raise ServiceUnavailable("test fault: {} refuses to post".format(process),
                                     retry_after_s=1)
        return int(settings.get("lose_posting_reply_ms") or 0) / 1000

    def voting(self, process):
        """Before a vote: wait the delay asked for; what forges the votes, or None."""
        settings = self.of(process)
        delay_s = int(settings.get("vote_delay_ms") or 0) / 1000
        if delay_s:
            self.sleep(delay_s)
        forge = settings.get("forge_votes")
        if not forge:
            return None
        if forge == "key":
            # The impostor names the validator's real key: only the signature gives it away.
            return lambda decisions, key: _signed(
                decisions, SigningKey(key.key_id, forged_key().private_key), process)
        if forge.startswith("as:"):
            return lambda decisions, key: _signed(decisions, key, forge[len("as:"):])
        if forge.startswith("key_file:"):
            other = SigningKey.from_pem(Path(forge[len("key_file:"):]).read_bytes())
            return lambda decisions, key: _signed(decisions, other, process)
        raise ValueError("test fault: forge_votes must be 'key', 'as:<name>' or "
                         "'key_file:<path>', not {!r}".format(forge))


    def answering(self, process, key):
        """Before a request stores its answer under Idempotency-Key ``key``: hold it back,
        the first time only, for as long as asked (a request that outlives its lease)."""
        hold = self.of(process).get("hold_answer") or {}
        if hold.get("key") == key and key not in self._held:
            self._held.add(key)
            self.sleep(int(hold.get("ms") or 0) / 1000)


def _signed(decisions, key, validator_id):
    return sign_round(key, validator_id, decisions)


_faults = Faults(os.environ[ENV]) if os.environ.get(ENV) else None
armed = _faults is not None


def posting(process):
    """The ledger's ``post``: see ``Faults.posting``."""
    return _faults.posting(process)


def voting(process):
    """A validator's ``vote``: see ``Faults.voting``."""
    return _faults.voting(process)


def answering(process, key):
    """The gateway's guard, before it stores an answer: see ``Faults.answering``."""
    _faults.answering(process, key)


def sleep(seconds):
    _faults.sleep(seconds)
