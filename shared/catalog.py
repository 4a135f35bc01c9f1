"""The services of the system: which process runs what, and which schema each owns."""
from dataclasses import dataclass

from shared.config import validator_names


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


def service_for(process_name):
    """``validator_2`` runs the validator service; every other process runs its namesake."""
    if process_name.startswith("validator_"):
        return BY_NAME["validator"]
    return BY_NAME[process_name]


def process_names(config):
    """Every service process of the system, one per validator of the pool."""
    return processes_of(validator_names(config))


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
