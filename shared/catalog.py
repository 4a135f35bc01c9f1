"""The services of the system: which process runs what, and which schema each owns.

An *identity* is what the rest of the system calls a service by: its RPC name (``ledger``,
``validator_2``). A *process* is one OS process of an identity: with ``replicas`` above 1
(config.yml) an identity runs several, all consuming its queues. The first keeps the
identity's own name (so one replica is exactly the system of old); the others are
``<identity>-<n>``: ``ledger-2``, ``validator_2-2``. That name is the supervisord
program, its log file, its row in `paysys ps`, its metrics port and its key directory.
"""
from dataclasses import dataclass

from shared.config import replica_counts, validator_names

# Between an identity and its replica's number in a process name. Neither a service's
# name nor a validator's has one; supervisord, file names and Kubernetes all take it.
REPLICA_MARK = "-"


@dataclass(frozen=True)
class Service:
    name: str  # the RPC identity, and the supervisord program name
    entry: str  # "module:Class" of its Nameko service class
    schema: str  # the PostgreSQL schema it owns
    settings: str  # "module:Class" of its settings model (shared/settings.py)

    def settings_model(self):
        return _import(self.settings)


SERVICES = (
    Service("auth", "services.auth.service:AuthService", "auth",
            "services.auth.settings:AuthSettings"),
    Service("transactions", "services.transactions.service:TransactionsService", "transactions",
            "services.transactions.settings:TransactionsSettings"),
    Service("validator", "services.validator.service:ValidatorService", "validator",
            "services.validator.settings:ValidatorSettings"),
    Service("payments", "services.payments.service:PaymentsService", "payments",
            "services.payments.settings:PaymentsSettings"),
    Service("ledger", "services.ledger.service:LedgerService", "ledger",
            "services.ledger.settings:LedgerSettings"),
    Service("notifications", "services.notifications.service:NotificationsService",
            "notifications", "services.notifications.settings:NotificationsSettings"),
    Service("gateway", "gateway.service:GatewayService", "gateway",
            "gateway.settings:GatewaySettings"),
)
BY_NAME = {service.name: service for service in SERVICES}
SHARED_SETTINGS = "shared.shared_settings:SharedSettings"


def _import(entry):
    import importlib

    module_name, class_name = entry.split(":")
    return getattr(importlib.import_module(module_name), class_name)


def settings_models():
    """``{"shared": SharedSettings, "auth": AuthSettings, …}``: every settings model."""
    models = {"shared": _import(SHARED_SETTINGS)}
    models.update((service.name, service.settings_model()) for service in SERVICES)
    return models


# Where paysys.runner puts the name of the process in the configuration its Nameko
# container reads: what serves a process rather than its identity (its metrics port, its
# database sessions' application_name) asks ``process_name_of``.
PROCESS_NAME_KEY = "paysys_process_name"


def process_name_of(container):
    """The process a Nameko container runs in: ``ledger-2``; its service's name where the
    runner did not say (a test's container)."""
    return container.config.get(PROCESS_NAME_KEY) or container.service_name


def identity_of(process_name):
    """The RPC identity a process serves: ``validator_2-2`` -> ``validator_2``."""
    return process_name.partition(REPLICA_MARK)[0]


def replica_name(identity, replica):
    """The process name of replica ``replica`` (1, 2, …) of ``identity``."""
    return identity if replica == 1 else "{}{}{}".format(identity, REPLICA_MARK, replica)


def service_for(process_name):
    """``validator_2`` (and its replicas) runs the validator service; every other process
    runs its namesake."""
    identity = identity_of(process_name)
    if identity.startswith("validator_"):
        return BY_NAME["validator"]
    return BY_NAME[identity]


def identities(config):
    """Every RPC identity of the system, one per validator of the pool: the first replica
    of each, in the catalog's order."""
    return processes_of(validator_names(config))


def process_names(config):
    """Every service process of the system: the first replica of each identity in the
    catalog's order, then every second replica, and so on (so adding replicas moves no
    first replica's metrics port)."""
    counts = replica_counts(config)
    first = identities(config)
    names = list(first)
    for replica in range(2, max(counts.values(), default=1) + 1):
        names.extend(replica_name(identity, replica) for identity in first
                     if counts[service_for(identity).name] >= replica)
    return names


def processes_of(validators):
    """Every service process, given the validator pool's names."""
    names = []
    for service in SERVICES:
        names.extend(validators if service.name == "validator" else [service.name])
    return names


def rpc_identities(config):
    """Every RPC identity the gateway pings for readiness (all processes but itself)."""
    return rpc_identities_of(validator_names(config))


def rpc_identities_of(validators):
    return [name for name in processes_of(validators) if name != "gateway"]
