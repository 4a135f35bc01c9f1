"""What every Nameko service of the system has: correlation-aware logs, a health RPC, and
its metrics and liveness on a port of its own (shared/metrics)."""
from shared import work_counters
from shared.errors import PaysysError
from shared.logs import CorrelationId
from shared.metrics.rpc import RpcMetrics
from shared.metrics.server import MetricsPort
from shared.queues import rpc as typed_rpc
from shared.worker_cycles import BreakWorkerCycles


def rpc(fn):
    """Nameko's ``@rpc``, with every ``shared.errors`` type declared expected: a refused
    request (404, 409, 422…) is an answer, not a fault, so it is not logged as a crash. Its
    queue has the configured type (shared/queues.py: quorum on a RabbitMQ cluster)."""
    return typed_rpc(expected_exceptions=PaysysError)(fn)


class ServiceBase:
    """Base class of every service (Nameko collects inherited entrypoints and dependencies)."""

    name = None
    correlation_id = CorrelationId()
    # GET /metrics and GET /livez on the process's metrics port; every RPC timed.
    metrics_port = MetricsPort()
    rpc_metrics = RpcMetrics()
    # A worker's request, answer and rows freed when it ends, not in a later GC pause.
    worker_cycles = BreakWorkerCycles()

    @rpc
    def health(self, deep=False):
        """``health()`` answers from the process alone (is it up and serving RPC?);
        ``health(deep=True)`` adds what ``deep_health`` finds of what the service needs."""
        report = {"service": self.name, "status": "ok"}
        if deep:
            report.update(self.deep_health())
        return report

    def deep_health(self):
        """The service's migration revision, read from its schema: PostgreSQL answers and
        the schema is there. A service that keeps nothing in PostgreSQL says instead what
        it does depend on."""
        return {"schema_version": self.db.schema_version()}

    @rpc
    def work_counters(self):
        """``{rpc_calls, rpcs_served, db_commits, cpu_s, pid}`` of this process since it
        started (shared/work_counters.py)."""
        return work_counters.snapshot()
