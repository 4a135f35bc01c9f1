"""The service processes as deployments see them: name, keys, HTTP and metrics ports, scaling.

Which processes exist comes from ``shared/catalog.py`` and the validator pool size of
``config.yml`` (its default, whatever the environment says): drop a service from the
catalog, run ``make deploy-generate``, and its container, Deployment and keys are gone.
The only facts kept here are what the code of a service reads, by service name.
"""
import os
from dataclasses import dataclass, field
from unittest import mock

from services.notifications.secret_box import key_file as webhook_key_file
from shared.catalog import process_names, service_for
from shared.config import load_config, validator_names
from shared.metrics.ports import metrics_port
from shared.tokens import key_files
from shared.votes import key_file

# Where a container finds its keys (a volume in compose, a Secret in Kubernetes).
KEYS_DIR = "/keys"
GATEWAY_PORT = 8000
# The key material each service's code loads (shared/tokens.py, shared/votes.py and the
# services' dependencies.py): auth signs tokens, the gateway verifies them, each validator
# signs its votes and the transactions service verifies every validator's; notifications
# seals and opens webhook secrets (services/notifications/secret_box.py).
TOKEN_PRIVATE, TOKEN_PUBLIC, OWN_VOTE_KEY, EVERY_VOTE_KEY, WEBHOOK_KEY = (
    "token-private", "token-public", "own-vote-key", "every-vote-key", "webhook-key")
READS = {
    "auth": TOKEN_PRIVATE,
    "gateway": TOKEN_PUBLIC,
    "validator": OWN_VOTE_KEY,
    "transactions": EVERY_VOTE_KEY,
    "notifications": WEBHOOK_KEY,
}
# A validator is an identity of the pool (its own key, its own RPC name): it is never
# scaled out; the pool grows by configuring more validators.
NOT_SCALED = {"validator"}
HTTP = {"gateway": GATEWAY_PORT}


@dataclass(frozen=True)
class Process:
    name: str  # the process name of `paysys serve`: validator_2
    service: str  # its service in the catalog: validator
    keys: tuple = ()  # the key files it reads, by file name
    env: dict = field(default_factory=dict)  # what points its configuration at them
    http_port: int = None
    scalable: bool = True
    # GET /metrics and GET /livez (shared/metrics): config.yml's port_base + its place.
    metrics_port: int = None

    @property
    def dns_name(self):
        """The name in Kubernetes (no underscores there): validator-2."""
        return self.name.replace("_", "-")


def default_config():
    """config.yml with its defaults: the generated files must not depend on who runs it."""
    clean = {name: value for name, value in os.environ.items()
             if not name.startswith("PAYSYS_")}
    with mock.patch.dict(os.environ, clean, clear=True):
        return load_config()


def key_names(config):
    """File names of the key set: ``{"token-private": …, "validator_1": …}``."""
    private, public = key_files(config)
    names = {TOKEN_PRIVATE: private.name, TOKEN_PUBLIC: public.name,
             WEBHOOK_KEY: webhook_key_file(config).name}
    for validator in validator_names(config):
        names[validator] = key_file(config, validator).name
    return names


def _keys_and_env(name, service, config):
    names = key_names(config)
    reads = READS.get(service)
    if reads == TOKEN_PRIVATE:
        return (names[TOKEN_PRIVATE],), {
            "PAYSYS_JWT_PRIVATE_KEY_FILE": "{}/{}".format(KEYS_DIR, names[TOKEN_PRIVATE])}
    if reads == TOKEN_PUBLIC:
        return (names[TOKEN_PUBLIC],), {
            "PAYSYS_JWT_PUBLIC_KEY_FILE": "{}/{}".format(KEYS_DIR, names[TOKEN_PUBLIC])}
    if reads == OWN_VOTE_KEY:
        return (names[name],), {"PAYSYS_VALIDATOR_KEYS_DIR": KEYS_DIR}
    if reads == WEBHOOK_KEY:
        return (names[WEBHOOK_KEY],), {
            "PAYSYS_WEBHOOK_KEY_FILE": "{}/{}".format(KEYS_DIR, names[WEBHOOK_KEY])}
    if reads == EVERY_VOTE_KEY:
        return tuple(names[v] for v in validator_names(config)), {
            "PAYSYS_VALIDATOR_KEYS_DIR": KEYS_DIR}
    return (), {}


def processes(config=None):
    """Every process of the system, in the catalog's order."""
    config = config or default_config()
    found = []
    for name in process_names(config):
        service = service_for(name).name
        keys, env = _keys_and_env(name, service, config)
        found.append(Process(name, service, keys, env, HTTP.get(service),
                             service not in NOT_SCALED, metrics_port(config, name)))
    return found
