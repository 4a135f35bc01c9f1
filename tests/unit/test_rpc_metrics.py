"""The RPC metrics every service keeps (shared/metrics/rpc.py), on a real Nameko container
whose RPCs are called through RabbitMQ (a vhost of its own)."""
import time
from unittest import mock

import pytest
from nameko.rpc import RpcProxy
from nameko.standalone.rpc import ServiceRpcProxy
from nameko.testing.services import entrypoint_hook
from nameko.timer import timer

from harness import servers
from shared.errors import NotFound, ServiceUnavailable
from shared.metrics import rpc as rpc_metrics
from shared.metrics import REGISTRY
from shared.metrics.rpc import CLIENT_ERROR, SERVER_ERROR, RpcMetrics, error_kind
from shared.service import rpc
from tests.support.vhosts import running_on_own_vhost


class Measured:
    name = "measured_rpcs"
    metrics = RpcMetrics()
    peer = RpcProxy("nobody")  # never called: a dependency beside the one measured

    @rpc
    def echo(self, value):
        return value

    @rpc
    def slow(self, seconds):
        time.sleep(seconds)
        return seconds

    @rpc
    def missing(self):
        raise NotFound("no such thing")

    @rpc
    def broken(self):
        raise KeyError("a bug")

    @rpc
    def unavailable(self):
        raise ServiceUnavailable("a dependency did not answer")

    @timer(interval=3600)
    def tick(self):
        return "ticked"


def sample(name, **labels):
    return REGISTRY.get_sample_value(name, dict(labels, service="measured_rpcs"))


@pytest.fixture
def service():
    with running_on_own_vhost("rpc_metrics", Measured) as (config, runner), \
            ServiceRpcProxy("measured_rpcs", config, timeout=10) as proxy:
        [container] = runner.containers
        yield container, proxy


def count(method):
    return sample("paysys_rpc_duration_seconds_count", method=method) or 0


def counted(method, at_least):
    """Wait until ``method`` has been timed ``at_least`` times: a worker sends its reply
    before its dependencies see the result, so the caller may get there first."""
    servers.wait_for(lambda: count(method) >= at_least, timeout_s=10,
                     what="{} timed {} times".format(method, at_least))


def test_every_rpc_is_timed_under_its_service_and_method(service):
    _, proxy = service
    before = count("echo")
    slow_before = sample("paysys_rpc_duration_seconds_bucket", method="slow", le="0.1") or 0
    assert proxy.echo("hello") == "hello"
    assert proxy.echo("again") == "again"
    proxy.slow(0.2)
    counted("echo", before + 2)
    counted("slow", 1)
    assert count("echo") == before + 2
    # The 0.2 s call is above the 0.1 s bucket and within the 0.25 s one.
    assert sample("paysys_rpc_duration_seconds_bucket", method="slow", le="0.1") == slow_before
    assert sample("paysys_rpc_duration_seconds_bucket", method="slow", le="0.25") >= 1
    assert sample("paysys_rpc_duration_seconds_sum", method="slow") >= 0.2


def test_errors_are_counted_by_type_and_kind(service):
    _, proxy = service
    for method in ("missing", "broken", "unavailable"):
        with pytest.raises(Exception):
            getattr(proxy, method)()
        counted(method, 1)
    assert sample("paysys_rpc_errors_total", method="missing", error="NotFound",
                  kind=CLIENT_ERROR) >= 1
    assert sample("paysys_rpc_errors_total", method="broken", error="KeyError",
                  kind=SERVER_ERROR) >= 1
    assert sample("paysys_rpc_errors_total", method="unavailable", error="ServiceUnavailable",
                  kind=SERVER_ERROR) >= 1
    # A failed call is timed too; a successful one counts no error.
    proxy.echo(1)
    counted("echo", 1)
    assert sample("paysys_rpc_errors_total", method="echo", error="NotFound",
                  kind=CLIENT_ERROR) is None


def test_other_entrypoints_are_not_rpcs(service):
    container, _ = service
    with entrypoint_hook(container, "tick") as tick:
        assert tick() == "ticked"
    assert count("tick") == 0


def test_error_kind_follows_the_status_a_refusal_carries():
    assert error_kind(NotFound("x")) == CLIENT_ERROR
    assert error_kind(ServiceUnavailable("x")) == SERVER_ERROR
    assert error_kind(ValueError("x")) == SERVER_ERROR


def test_the_hooks_look_up_label_children_once_per_method_not_per_call(service):
    """The hooks run on every RPC: after the first call of a method, no label lookup (the
    costly part of an observation) happens again. docs/metrics.md has the hooks' cost."""
    container, _ = service
    provider = next(ext for ext in container.extensions if isinstance(ext, RpcMetrics))
    echo = next(ext for ext in container.entrypoints if ext.method_name == "echo")
    missing = next(ext for ext in container.entrypoints if ext.method_name == "missing")
    provider.timers.clear()
    provider.errors.clear()

    class Context:
        def __init__(self, entrypoint):
            self.entrypoint = entrypoint

    with mock.patch.object(rpc_metrics.rpc_duration_seconds, "labels",
                           wraps=rpc_metrics.rpc_duration_seconds.labels) as timer_labels, \
            mock.patch.object(rpc_metrics.rpc_errors_total, "labels",
                              wraps=rpc_metrics.rpc_errors_total.labels) as error_labels:
        for _ in range(100):
            for entrypoint, exc_info in ((echo, None), (missing, (NotFound, NotFound("x"), None))):
                worker_ctx = Context(entrypoint)
                provider.worker_setup(worker_ctx)
                provider.worker_result(worker_ctx, None, exc_info)
    assert timer_labels.call_count == 2
    assert error_labels.call_count == 1
