"""Each worker's objects freed by reference counting the moment it ends, not by the
garbage collector's next sweep.

Nameko injects a worker's dependencies as attributes of a fresh service instance, which
the worker's context holds (``worker_ctx.service``). A dependency that holds the context
in turn (an RPC directory does: its calls carry the context's data) closes a cycle, and
everything the worker reached — the HTTP request and its body, the answer, the rows —
then waits for a collection of the young generation. Under load that generation fills
with whole requests, and freeing them in one go stalls the process: 30–120 ms in the
gateway every few seconds at 200 requests/s, where every request in flight waits.
Dropping the injected attributes when the worker is torn down breaks the cycle.
"""
from nameko.extensions import DependencyProvider


class BreakWorkerCycles(DependencyProvider):
    """Declared once on a service (shared/service.py ``ServiceBase``); nothing to inject."""

    def get_dependency(self, worker_ctx):
        return None

    def worker_teardown(self, worker_ctx):
        # Last use of the instance: Nameko's teardown hooks read the context, never the
        # service's attributes, and no one keeps the instance once the worker is done.
        if worker_ctx.service is not None:
            vars(worker_ctx.service).clear()
