"""Dependency providers of the validator: its vote-signing key, and its voter."""
import logging
import time

from nameko.extensions import DependencyProvider

from services.validator.risk import RiskStore
from services.validator.rules import Policy
from services.validator.settings import ValidatorSettings
from services.validator.voter import Voter
from shared.redis import redis_client
from shared.settings import settings_of
from shared.shared_settings import SharedSettings
from shared.votes import RELOAD_CHECK_S, SigningKey, key_file

log = logging.getLogger(__name__)


class VoteKey(DependencyProvider):
    """This validator's own Ed25519 signing key (``<keys_dir>/<name>.key``), the only key
    it reads. Read at setup, and again when the file changes (`paysys keys rotate`), looked
    at no more than once a second.

    A validator that cannot sign could only cast votes the transactions service throws
    away, so a missing or unreadable key stops it from starting instead; a rotated file
    that cannot be read leaves it signing with the key it has (logged)."""

    key = None

    def __init__(self, monotonic=time.monotonic):
        self.monotonic = monotonic
        self._stamp = None
        self._checked = None

    def setup(self):
        self.validator_id = self.container.service_name
        self.path = key_file(self.container.config, self.validator_id)
        try:
            self._read()
        except FileNotFoundError:
            raise RuntimeError(
                "{}: no vote-signing key at {}; `paysys keys` (or `make up`) creates the "
                "pool's keys (shared.votes.ensure_validator_keys)".format(
                    self.validator_id, self.path)) from None
        except ValueError as error:
            raise RuntimeError("{}: the vote-signing key at {} is not an Ed25519 key "
                               "({}); `paysys keys` replaces it".format(
                                   self.validator_id, self.path, error)) from None
        self._checked = self.monotonic()

    def _read(self):
        stat = self.path.stat()
        stamp = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        if stamp != self._stamp:
            key = SigningKey.from_pem(self.path.read_bytes())
            if self.key is not None and key.key_id != self.key.key_id:
                log.info("%s: signing with the new key %s (was %s)", self.validator_id,
                         key.key_id, self.key.key_id)
            self.key, self._stamp = key, stamp

    def current(self):
        now = self.monotonic()
        if now - self._checked >= RELOAD_CHECK_S:
            self._checked = now
            try:
                self._read()
            except (OSError, ValueError) as error:
                log.error("%s: cannot read the key at %s (%s); still signing with %s",
                          self.validator_id, self.path, error, self.key.key_id)
        return self.key

    def get_dependency(self, worker_ctx):
        return self.current()


class RiskChecks(DependencyProvider):
    """Gives workers the ``Voter``: the limits parsed from config once, and a Redis client
    of its own with a short timeout and no retries (``shared.redis.redis_client``): a vote
    has a deadline, and a stateful check that cannot be made at once is skipped instead."""

    voter = None
    client = None

    def setup(self):
        section = settings_of(self.container, ValidatorSettings).validator
        # A vote must arrive within the transactions service's vote deadline, so Redis
        # gets far less than that before the stateful rules are skipped.
        self.client = redis_client(settings_of(self.container, SharedSettings).redis.url,
                                   section.redis_timeout_s, decode_responses=True)
        store = RiskStore(self.client, self.container.service_name)
        self.voter = Voter(Policy.from_settings(section), store)

    def stop(self):
        if self.client is not None:
            self.client.close()

    def kill(self):
        self.stop()

    def get_dependency(self, worker_ctx):
        return self.voter
