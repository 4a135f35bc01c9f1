"""The service processes, for `paysys up` and the deployment files: names, keys, ports.

Which processes exist comes from ``shared/catalog.py`` and the validator pool size of
``config.yml`` (its default, whatever the environment says): drop a service from the
catalog, run ``make deploy-generate``, and its container, Deployment and keys are gone.
The only facts kept here are what the code of a service reads, by service name.
"""
import os
from dataclasses import dataclass, field
from unittest import mock

from services.notifications.secret_box import key_file as webhook_key_file
from shared.catalog import identity_of, process_names, service_for
from shared.config import load_config, validator_names
from shared.metrics.ports import metrics_port
from shared.tokens import key_files
from shared.votes import key_file, public_key_file

# Where a container finds its keys (a volume in compose, a Secret in Kubernetes).
KEYS_DIR = "/keys"
GATEWAY_PORT = 8000
# The key material each service's code loads (shared/tokens.py, shared/votes.py and the
# services' dependencies.py): auth signs tokens, the gateway verifies them, each validator
# signs its votes with its own private key and the transactions service verifies them with
# the validators' public keys alone; notifications seals and opens webhook secrets
# (services/notifications/secret_box.py). docs/keys.md has the same table.
TOKEN_PRIVATE, TOKEN_PUBLIC, OWN_VOTE_KEY, VOTE_PUBLIC_KEYS, WEBHOOK_KEY = (
    "token-private", "token-public", "own-vote-key", "vote-public-keys", "webhook-key")
READS = {
    "auth": TOKEN_PRIVATE,
    "gateway": TOKEN_PUBLIC,
    "validator": OWN_VOTE_KEY,
    "transactions": VOTE_PUBLIC_KEYS,
    "notifications": WEBHOOK_KEY,
}
# What points a process's configuration at each kind of key (config.yml).
KEY_ENV = {
    TOKEN_PRIVATE: "PAYSYS_JWT_PRIVATE_KEY_FILE",
    TOKEN_PUBLIC: "PAYSYS_JWT_PUBLIC_KEY_FILE",
    WEBHOOK_KEY: "PAYSYS_WEBHOOK_KEY_FILE",
}
VALIDATOR_KEYS_ENV = "PAYSYS_VALIDATOR_KEYS_DIR"
# A validator is an identity of the pool (its own key, its own RPC name): the deployment
# files never autoscale it; the pool grows by configuring more validators. (`make up`'s
# replicas may run several processes of it: still one voter.)
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


def key_paths(config):
    """Where this configuration keeps each key: ``{"token-private": path, …,
    "validator_1": its private key, "validator_1.pub": its public keys}``."""
    private, public = key_files(config)
    paths = {TOKEN_PRIVATE: private, TOKEN_PUBLIC: public, WEBHOOK_KEY: webhook_key_file(config)}
    for validator in validator_names(config):
        paths[validator] = key_file(config, validator)
        paths[validator + ".pub"] = public_key_file(config, validator)
    return paths


def key_names(config):
    """File names of the key set: ``{"token-private": …, "validator_1": …}``."""
    return {kind: path.name for kind, path in key_paths(config).items()}


def held_keys(name, service, config):
    """The kinds of key (``key_paths``' names) the process ``name`` reads."""
    reads = READS.get(service)
    if reads == OWN_VOTE_KEY:
        return (identity_of(name),)  # each replica of a validator signs as that validator
    if reads == VOTE_PUBLIC_KEYS:
        return tuple(v + ".pub" for v in validator_names(config))
    return (reads,) if reads else ()


def key_env(kinds, names, keys_dir, every_variable=False):
    """The environment that points a process's configuration at its keys in ``keys_dir``.
    ``every_variable``: point the keys it does not hold there too (where they are absent),
    so it never falls back to a shared key directory."""
    env = {}
    for kind, variable in KEY_ENV.items():
        if every_variable or kind in kinds:
            env[variable] = "{}/{}".format(keys_dir, names[kind])
    # Every other kind is a validator's key (private or public): they live in one directory.
    if every_variable or any(kind not in KEY_ENV for kind in kinds):
        env[VALIDATOR_KEYS_ENV] = str(keys_dir)
    return env


def _keys_and_env(name, service, config):
    names = key_names(config)
    kinds = held_keys(name, service, config)
    return tuple(names[kind] for kind in kinds), key_env(kinds, names, KEYS_DIR)


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
