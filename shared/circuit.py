"""A circuit breaker: stop calling a dependency that keeps failing, for a while.

Without one, every request to a dead service waits out the full RPC deadline
and ties up a gateway worker; with one, after ``failure_threshold`` failures in
a row the next calls fail at once (503 with ``Retry-After``) for
``reset_timeout_s``, then a single trial call decides whether to close again.

Only a call that got no answer counts as a failure (``shared.errors.unanswered``):
a ``NotFound``, a validation error, even a 503 the dependency sends itself, is the
dependency answering, which is a success for the breaker.
"""
import math
import time

from nameko.exceptions import deserialize_to_instance

from shared.errors import ServiceUnavailable

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


@deserialize_to_instance  # crosses RPC typed, like every shared.errors type
class CircuitOpen(ServiceUnavailable):
    code = "circuit_open"


class CircuitBreaker:
    def __init__(self, name, failure_threshold=5, reset_timeout_s=5.0, clock=time.monotonic):
        self.name = name
        self.failure_threshold = int(failure_threshold)
        self.reset_timeout_s = float(reset_timeout_s)
        self.clock = clock
        self.state = CLOSED
        self.failures = 0
        self.opened_at = None
        self.trial_in_flight = False

    def before_call(self):
        """Raise ``CircuitOpen`` unless a call may go through now."""
        if self.state == CLOSED:
            return
        remaining_s = self.opened_at + self.reset_timeout_s - self.clock()
        if self.state == OPEN and remaining_s <= 0:
            self.state = HALF_OPEN
        if self.state == HALF_OPEN and not self.trial_in_flight:
            self.trial_in_flight = True  # this call is the trial; the others keep failing fast
            return
        raise CircuitOpen(
            "{} is failing; not calling it for a moment".format(self.name),
            retry_after_s=max(1, math.ceil(remaining_s)),
        )

    def succeeded(self):
        self.state = CLOSED
        self.failures = 0
        self.trial_in_flight = False

    def failed(self):
        self.trial_in_flight = False
        self.failures += 1
        if self.state == HALF_OPEN or self.failures >= self.failure_threshold:
            self.state = OPEN
            self.opened_at = self.clock()

    def call(self, function, *args, **kwargs):
        self.before_call()
        try:
            result = function(*args, **kwargs)
        except ServiceUnavailable as error:
            if getattr(error, "unanswered", False):
                self.failed()
            else:
                self.succeeded()
            raise
        except Exception:
            # An answer, even an error, proves the dependency is there.
            self.succeeded()
            raise
        except BaseException:
            # The caller was killed or timed out from outside: says nothing of the dependency.
            self.trial_in_flight = False
            raise
        self.succeeded()
        return result
