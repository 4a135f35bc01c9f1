"""Dependency providers of the validator: its vote-signing key, and its voter."""
from nameko.extensions import DependencyProvider

from services.validator.risk import RiskStore
from services.validator.rules import Policy
from services.validator.settings import ValidatorSettings
from services.validator.voter import Voter
from shared.redis import redis_client
from shared.settings import settings_of
from shared.shared_settings import SharedSettings
from shared.votes import key_file, load_validator_key


class VoteKey(DependencyProvider):
    """This validator's own HMAC key (``<keys_dir>/<name>.key``), read once at setup.

    A validator that cannot sign could only cast votes the transactions service throws
    away, so a missing or unreadable key stops it from starting instead."""

    key = None

    def setup(self):
        config = self.container.config
        validator_id = self.container.service_name
        path = key_file(config, validator_id)
        try:
            key = load_validator_key(config, validator_id)
        except FileNotFoundError:
            raise RuntimeError(
                "{}: no vote-signing key at {}; `paysys keys` (or `make up`) creates the "
                "pool's keys (shared.votes.ensure_validator_keys)".format(validator_id, path)
            ) from None
        except ValueError:
            key = b""
        if not key:
            raise RuntimeError("{}: the vote-signing key at {} is not a hex key".format(
                validator_id, path))
        self.key = key

    def get_dependency(self, worker_ctx):
        return self.key


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
