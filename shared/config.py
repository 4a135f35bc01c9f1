"""Loads config.yml, the one configuration file of every service.

Values may name environment variables as ``${VAR:default}`` (the syntax of
``nameko run --config``). A value that is a single reference is typed after
substitution (``${N:3}`` gives the integer 3); a reference inside a longer
string stays a string.
"""
import os
import re
from pathlib import Path

import yaml

ENV_REFERENCE = re.compile(r"\$\{(?P<name>[^}{:]+)(?::(?P<default>[^}]*))?\}")
CONFIG_PATH_ENV = "PAYSYS_CONFIG"
ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG_PATH = ROOT / "config.yml"


class _EnvLoader(yaml.SafeLoader):
    """A SafeLoader that substitutes ${VAR:default} references."""


def _substitute(match):
    return os.environ.get(match.group("name"), match.group("default") or "")


def _construct_env_reference(loader, node):
    raw = loader.construct_scalar(node)
    substituted = ENV_REFERENCE.sub(_substitute, raw)
    if ENV_REFERENCE.fullmatch(raw):
        # A whole-value reference takes the YAML type of what it expands to.
        return yaml.safe_load(substituted) if substituted != "" else ""
    return substituted


# The resolver matches from the start of a plain scalar; the reference may be anywhere in it.
_EnvLoader.add_implicit_resolver("!env", re.compile(r".*" + ENV_REFERENCE.pattern), None)
_EnvLoader.add_constructor("!env", _construct_env_reference)


def config_path():
    return Path(os.environ.get(CONFIG_PATH_ENV) or DEFAULT_CONFIG_PATH)


def load_config(path=None):
    """Return config.yml (or ``path``) as a dict, environment substituted."""
    from shared.rabbitmq import apply_cluster

    with open(path or config_path(), encoding="utf-8") as stream:
        # With a RabbitMQ cluster, AMQP_URI names all its nodes (shared/rabbitmq.py).
        return apply_cluster(yaml.load(stream, Loader=_EnvLoader))


# For tools (the `paysys` commands, deploy/, the harness) that hold config.yml as a dict:
# each reads the shared settings model, so a tool and a service never read a key apart.


def _shared(config):
    from shared.settings import load
    from shared.shared_settings import SharedSettings

    return load(SharedSettings, config)


def kafka_bootstrap_servers(config):
    """The Kafka bootstrap address: the configured one, else the embedded broker's."""
    return _shared(config).kafka.servers


def kafka_is_embedded(config):
    return _shared(config).kafka.embedded


def validator_names(config):
    """RPC identities of the validator pool: validator_1 … validator_N."""
    return _shared(config).validators.names


def replica_counts(config):
    """``{service name: processes of each of its identities}`` (config.yml's replicas)."""
    return _shared(config).replicas.counts


def run_dir(config):
    """Where a running system keeps its supervisord files, logs and generated keys."""
    return _shared(config).supervisor.path
