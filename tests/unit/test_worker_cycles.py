"""A worker's objects are freed by reference counting when it ends (shared/worker_cycles.py),
on real Nameko containers with the garbage collector switched off: what the collector
would have to find is what stalls a busy process when it does."""
import gc
import weakref

import eventlet
import pytest
from nameko.testing.services import entrypoint_hook

from shared.rpc import ServiceRpc
from shared.service import ServiceBase, rpc
from tests.support.vhosts import running_on_own_vhost


class Made:
    """Something a worker makes and keeps on its service instance, as a handler keeps its
    request, its rows and its answer while it runs."""


class Holding:
    """An RPC directory, as every service that calls another has: it holds the worker's
    context, which holds the service instance that holds it."""

    calls = ServiceRpc()

    @rpc
    def work(self):
        self.made = Made()
        MADE.append(weakref.ref(self.made))
        return "done"


class Plain(Holding):
    name = "cycles_plain"


class Based(Holding, ServiceBase):
    name = "cycles_based"


MADE = []


@pytest.fixture
def collector_off():
    MADE.clear()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def run_one_worker(service_class, label):
    with running_on_own_vhost(label, service_class) as (_, runner):
        [container] = runner.containers
        with entrypoint_hook(container, "work") as work:
            assert work() == "done"
        # The answer goes out before the worker's teardown: wait for the worker to end.
        with eventlet.Timeout(5):
            while container._worker_threads:
                eventlet.sleep(0.01)
        [made] = MADE
        return made


def test_what_a_worker_made_is_freed_when_it_ends_without_a_collection(collector_off):
    made = run_one_worker(Based, "cycles_based")

    assert made() is None


def test_without_it_the_worker_waits_for_the_collector(collector_off):
    """The cycle the provider breaks is there: the same service without it keeps what
    its worker made until a collection."""
    made = run_one_worker(Plain, "cycles_plain")

    assert made() is not None
    gc.collect()
    assert made() is None
