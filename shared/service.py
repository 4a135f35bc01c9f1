"""What every Nameko service of the system has: correlation-aware logs and a health RPC."""
from nameko.rpc import rpc

from shared.logs import CorrelationId


class ServiceBase:
    """Base class of every service (Nameko collects inherited entrypoints and dependencies)."""

    name = None
    correlation_id = CorrelationId()

    @rpc
    def health(self, deep=False):
        """``health()`` answers from the process alone (is it up and serving RPC?);
        ``health(deep=True)`` also reads the service's migration revision from its schema."""
        report = {"service": self.name, "status": "ok"}
        if deep:
            report["schema_version"] = self.db.schema_version()
        return report
