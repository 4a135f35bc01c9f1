"""The state of every circuit breaker of the process (shared/circuit.py), read at scrape
time from the breakers themselves: nothing is added to a call.

    paysys_circuit_breaker_state{target}   0 closed, 1 half-open (the next call is a
        trial), 2 open (calls to ``target`` fail at once with 503)

Several RPC clients of one process may each keep a breaker for the same target: the
gauge shows the worst of them. A breaker left open with no call since its reset timeout
counts as half-open: the next call will try.
"""
import weakref

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from shared.circuit import CLOSED, HALF_OPEN, OPEN
from shared.metrics import REGISTRY

STATE_VALUE = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}
NAME = "paysys_circuit_breaker_state"


def breaker_value(breaker):
    if breaker.state == OPEN and breaker.clock() - breaker.opened_at >= breaker.reset_timeout_s:
        return STATE_VALUE[HALF_OPEN]
    return STATE_VALUE[breaker.state]


class BreakerStates(Collector):
    def __init__(self):
        self.owners = weakref.WeakSet()  # whatever keeps breakers in ``.breakers`` (RpcClient)

    def watch(self, owner):
        self.owners.add(owner)

    def describe(self):
        return [self._family()]

    def _family(self):
        return GaugeMetricFamily(NAME, "Circuit breaker of calls to a service: 0 closed, "
                                 "1 half-open, 2 open (calls fail at once)", labels=["target"])

    def collect(self):
        worst = {}
        for owner in list(self.owners):
            for target, breaker in list(owner.breakers.items()):
                worst[target] = max(worst.get(target, 0), breaker_value(breaker))
        family = self._family()
        for target, value in sorted(worst.items()):
            family.add_metric([target], value)
        return [family]


BREAKERS = BreakerStates()
REGISTRY.register(BREAKERS)
