"""Service workers built in-process from their real dependency providers (``worker_factory``),
for tests of one or a few services against real PostgreSQL and Redis."""
from unittest.mock import Mock

from nameko.testing.services import worker_factory

from paysys.runner import service_class
from services.validator.dependencies import RiskChecks, VoteKey
from shared.catalog import service_for

NOON = 1772366400.0  # 2026-03-01T12:00:00Z: a fixed clock for the validators' day


def bound(provider, config, name):
    """The provider as the container of service ``name`` binds it (held weakly: keep it)."""
    container = Mock(config=config, service_name=name)
    provider = provider.bind(container, "dependency")
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
