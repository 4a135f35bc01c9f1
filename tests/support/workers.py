"""Service workers built in-process from their real dependency providers (``worker_factory``),
for tests of one or a few services against real PostgreSQL and Redis."""
from types import SimpleNamespace
from unittest.mock import Mock

import eventlet
from nameko.extensions import DependencyProvider
from nameko.testing.services import worker_factory

from paysys.runner import service_class
from services.transactions.consensus import Consensus
from services.transactions.dependencies import ValidatorPool
from services.validator.dependencies import RiskChecks, VoteKey
from shared.catalog import service_for
from shared.db import DatabaseAccess

NOON = 1772366400.0  # 2026-03-01T12:00:00Z: a fixed clock for the validators' day


def bound(provider, config, name):
    """The provider (or extension) as the container of service ``name`` binds it (held
    weakly: keep it)."""
    container = Mock(config=config, service_name=name)
    if isinstance(provider, DependencyProvider):
        provider = provider.bind(container, "dependency")
    else:
        provider = provider.bind(container)
    provider._test_container = container
    provider.setup()
    return provider


class ValidatorWorkers:
    """Makes validator workers; every provider made is stopped at the end of the test."""

    def __init__(self, config):
        self.config = config
        self.providers = []

    def worker(self, name="validator_1", clock=None):
        key = bound(VoteKey(), self.config, name)
        risk = bound(RiskChecks(), self.config, name)
        self.providers.append(risk)
        voter = risk.get_dependency(Mock())
        voter.clock = clock or (lambda: NOON)
        worker = worker_factory(service_class(name, service_for(name)),
                                vote_key=key.get_dependency(Mock()), risk=voter)
        worker.voter = voter
        return worker

    def stop(self):
        for provider in self.providers:
            provider.stop()


class InProcessConsensus(Consensus):
    """The transactions service's real ``Consensus``, but its RPC calls go to in-process
    workers (``services``: an object with one attribute per service, as
    ``shared.rpc.ServiceDirectory`` has; what the RPC transport adds — the deadline, the
    breakers, AMQP — is not here) and its batches run in plain greenthreads."""

    def __init__(self, config, engine, services):
        self.db = SimpleNamespace(access=lambda: DatabaseAccess(engine, "transactions"))
        self.rpc = SimpleNamespace(detached=lambda name, correlation_id: self.services)
        self.services = services
        self.pool = bound(ValidatorPool(), config, "transactions")
        self.container = SimpleNamespace(
            config=config, spawn_managed_thread=lambda run, identifier=None: eventlet.spawn(run))
        self.setup()
