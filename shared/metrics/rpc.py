"""``RpcMetrics``: how long each RPC a process serves takes, and which ones fail.

    paysys_rpc_duration_seconds{service, method}          histogram, worker start to reply sent
    paysys_rpc_errors_total{service, method, error, kind}  counter; kind: client_error (the
        service refused the request: a 4xx ``shared.errors`` type) or server_error
        (anything else, or a 5xx type: unavailable dependency, a crash)

On the hot path of every RPC: the label children are looked up once per method (and per
error type) and kept, so a call costs a clock read in ``worker_setup`` and one histogram
observation in ``worker_result``, about two microseconds (docs/metrics.md).
Only RPC entrypoints are measured; timers, event handlers and the gateway's HTTP routes
(whose requests gateway/metrics.py counts) pass through untouched.
"""
import time

from nameko.extensions import DependencyProvider
from nameko.rpc import Rpc
from prometheus_client import Counter, Histogram

from shared.metrics import REGISTRY

# From a cached read (under a millisecond) to a submit that waits out a vote round.
DURATION_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                      10.0)
CLIENT_ERROR, SERVER_ERROR = "client_error", "server_error"

rpc_duration_seconds = Histogram(
    "paysys_rpc_duration_seconds",
    "Time an RPC took in the service that served it, from its worker's start to its reply",
    ["service", "method"], buckets=DURATION_BUCKETS_S, registry=REGISTRY)
rpc_errors_total = Counter(
    "paysys_rpc_errors",
    "RPCs that answered with an error, by the error's type and kind (client_error: the "
    "request was refused; server_error: the service failed it)",
    ["service", "method", "error", "kind"], registry=REGISTRY)

_STARTED = "_paysys_rpc_started_s"
_NOT_RPC = object()


def error_kind(error):
    """client_error for a refusal the service chose (a ``shared.errors`` type below 500),
    server_error for anything else."""
    status = getattr(error, "status", 500)
    return CLIENT_ERROR if isinstance(status, int) and status < 500 else SERVER_ERROR


class RpcMetrics(DependencyProvider):
    """Times every RPC worker of the container and counts its errors."""

    def __init__(self):
        self.timers = {}  # entrypoint -> its histogram child, or _NOT_RPC
        self.errors = {}  # (entrypoint, error type) -> its counter child

    def worker_setup(self, worker_ctx):
        setattr(worker_ctx, _STARTED, time.perf_counter())

    def worker_result(self, worker_ctx, result=None, exc_info=None):
        entrypoint = worker_ctx.entrypoint
        timer = self.timers.get(entrypoint)
        if timer is None:
            timer = self.timers[entrypoint] = self._timer(entrypoint)
        if timer is _NOT_RPC:
            return
        started = getattr(worker_ctx, _STARTED, None)
        if started is not None:
            timer.observe(time.perf_counter() - started)
        if exc_info is not None:
            self._count_error(entrypoint, exc_info[1])

    def _timer(self, entrypoint):
        if not isinstance(entrypoint, Rpc):
            return _NOT_RPC
        return rpc_duration_seconds.labels(self.container.service_name, entrypoint.method_name)

    def _count_error(self, entrypoint, error):
        key = (entrypoint, type(error))
        counter = self.errors.get(key)
        if counter is None:
            counter = self.errors[key] = rpc_errors_total.labels(
                self.container.service_name, entrypoint.method_name, type(error).__name__,
                error_kind(error))
        counter.inc()
