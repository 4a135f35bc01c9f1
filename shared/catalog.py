"""The services of the system: which process runs what, and which schema each owns."""
from dataclasses import dataclass

from shared.config import validator_names


@dataclass(frozen=True)
class Service:
    name: str  # the RPC identity, and the supervisord program name
    entry: str  # "module:Class" of its Nameko service class
    schema: str  # the PostgreSQL schema it owns


SERVICES = (
    Service("auth", "services.auth.service:AuthService", "auth"),
    Service("transactions", "services.transactions.service:TransactionsService", "transactions"),
    Service("validator", "services.validator.service:ValidatorService", "validator"),
    Service("payments", "services.payments.service:PaymentsService", "payments"),
    Service("ledger", "services.ledger.service:LedgerService", "ledger"),
    Service("notifications", "services.notifications.service:NotificationsService",
            "notifications"),
    Service("gateway", "gateway.service:GatewayService", "gateway"),
)
BY_NAME = {service.name: service for service in SERVICES}


def service_for(process_name):
    """``validator_2`` runs the validator service; every other process runs its namesake."""
    if process_name.startswith("validator_"):
        return BY_NAME["validator"]
    return BY_NAME[process_name]


def process_names(config):
    """Every service process of the system, one per validator of the pool."""
    names = []
    for service in SERVICES:
        names.extend(validator_names(config) if service.name == "validator" else [service.name])
    return names


def rpc_identities(config):
    """Every RPC identity the gateway pings for readiness (all processes but itself)."""
    return [name for name in process_names(config) if name != "gateway"]
