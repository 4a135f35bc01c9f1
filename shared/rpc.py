"""RPC calls that give up.

Nameko's service-side ``RpcProxy`` waits for a reply forever: a reply lost in a
broker restart, or a callee that is paused, hangs the caller's worker. This
dependency puts a deadline on the whole call (publish and reply) and turns a
miss into ``ServiceUnavailable``. A call that timed out may still run on the
callee, so every money-moving RPC is idempotent on the callee's side.

Each target service also has a circuit breaker (shared by every worker of the
process): a service that keeps timing out is not called again for a moment,
and its callers get an immediate 503 with ``Retry-After`` instead of waiting.

    rpc = ServiceRpc()                   # deadline: the shared rpc.timeout_ms
    self.rpc.accounts.get(account_id)    # a service by attribute
    self.rpc["validator_2"].health()     # or by name
    self.rpc.ledger.health(breaker=False)  # bypass the breaker (readiness probes)
"""
import eventlet
from kombu.exceptions import OperationalError
from nameko.containers import WorkerContext
from nameko.exceptions import UnknownService
from nameko.extensions import DependencyProvider, Extension
from nameko.rpc import MethodProxy

from shared import tracing, work_counters
from shared.circuit import CircuitBreaker
from shared.errors import unanswered
from shared.metrics.breakers import BREAKERS
from shared.logs import CORRELATION_ID_KEY
from shared.queues import RPC_DELIVERY_MODE, ReplyListener
from shared.settings import settings_of
from shared.shared_settings import SharedSettings


class RpcClient(Extension):
    """Calls to any service, each bounded by the shared ``rpc.timeout_ms`` (or, given
    ``timeout_ms_of(container)``, a deadline of the service's own settings), for any
    extension: a worker's ``ServiceRpc`` dependency nests one, and so does a provider
    whose own work (a batch of many requests, a background loop) makes calls."""

    reply_listener = ReplyListener()

    def __init__(self, timeout_ms_of=None, **options):
        self.timeout_ms_of = timeout_ms_of
        # Transient requests: a call's state is in PostgreSQL (shared/queues.py).
        self.options = dict({"delivery_mode": RPC_DELIVERY_MODE}, **options)
        self.timeout_s = None
        self.breakers = {}

    def setup(self):
        shared = settings_of(self.container, SharedSettings)
        self.timeout_s = (self.timeout_ms_of(self.container) / 1000 if self.timeout_ms_of
                          else shared.rpc.timeout_s)
        self.breaker_options = {
            "failure_threshold": shared.circuit_breaker.failure_threshold,
            "reset_timeout_s": shared.circuit_breaker.reset_timeout_s,
        }
        BREAKERS.watch(self)  # its breakers' states, read at scrape time

    def breaker(self, service_name):
        if service_name not in self.breakers:
            self.breakers[service_name] = CircuitBreaker(service_name, **self.breaker_options)
        return self.breakers[service_name]

    def directory(self, worker_ctx):
        return ServiceDirectory(worker_ctx, self)

    def detached(self, work_name, correlation_id):
        """Calls made by a provider's own work rather than by one worker: they carry
        ``correlation_id`` of their own, so the logs of every service tell that work's
        calls apart from any request's."""
        context = WorkerContext(self.container, None, _Work(work_name),
                                data={CORRELATION_ID_KEY: correlation_id})
        return ServiceDirectory(context, self)


class ServiceRpc(DependencyProvider):
    """A worker's calls to any service (see ``RpcClient``)."""

    def __init__(self, timeout_ms_of=None, **options):
        self.client = RpcClient(timeout_ms_of, **options)

    def get_dependency(self, worker_ctx):
        return self.client.directory(worker_ctx)


class _Work:
    """Stands in for an entrypoint in the context of detached calls (Nameko names calls
    after their entrypoint's method)."""

    def __init__(self, method_name):
        self.method_name = method_name


class ServiceDirectory:
    def __init__(self, worker_ctx, client):
        self._worker_ctx = worker_ctx
        self._client = client
        self._reply_listener = client.reply_listener
        self._timeout_s = client.timeout_s
        self._options = client.options

    def __getitem__(self, service_name):
        return TimedServiceProxy(self, service_name)

    def __getattr__(self, service_name):
        if service_name.startswith("_"):
            raise AttributeError(service_name)
        return TimedServiceProxy(self, service_name)

    def call(self, service_name, method_name, args, kwargs, timeout_s=None, breaker=True):
        if not breaker:
            return self._call(service_name, method_name, args, kwargs, timeout_s)
        return self._client.breaker(service_name).call(
            self._call, service_name, method_name, args, kwargs, timeout_s)

    def _call(self, service_name, method_name, args, kwargs, timeout_s=None):
        timeout_s = timeout_s or self._timeout_s
        work_counters.count(work_counters.RPC_CALLS)
        if isinstance(self._worker_ctx.entrypoint, _Work):
            # A provider's own work (a batch, a loop) has no worker span: its calls
            # continue whatever span is current where they are made (shared/tracing.py).
            self._worker_ctx.data[tracing.TRACEPARENT_KEY] = tracing.current_traceparent()
        method = MethodProxy(
            self._worker_ctx, service_name, method_name, self._reply_listener, **self._options
        )
        where = "{}.{}".format(service_name, method_name)
        reply = None
        try:
            with eventlet.Timeout(timeout_s):
                reply = method.call_async(*args, **kwargs)
                return reply.result()
        except eventlet.Timeout:
            self._forget(reply)
            raise unanswered("{} did not answer within {:g} s".format(where, timeout_s))
        except UnknownService:
            raise unanswered("{} has no running instance".format(where))
        except (OperationalError, OSError) as exc:
            raise unanswered("{} is unreachable: {}".format(where, exc))

    def _forget(self, reply):
        # The reply listener keeps an event per outstanding call; drop ours so
        # calls that never get an answer do not accumulate.
        if reply is None:
            return
        pending = self._reply_listener._reply_events
        for correlation_id, event in list(pending.items()):
            if event is reply.reply_event:
                pending.pop(correlation_id, None)
                break


class TimedServiceProxy:
    def __init__(self, directory, service_name):
        self._directory = directory
        self._service_name = service_name

    def __getattr__(self, method_name):
        if method_name.startswith("_"):
            raise AttributeError(method_name)

        def call(*args, timeout_s=None, breaker=True, **kwargs):
            return self._directory.call(
                self._service_name, method_name, args, kwargs, timeout_s, breaker)

        return call
