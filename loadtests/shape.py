"""A step load for Locust: add users in steps, hold the top, stop after a set time.

Opt-in: name this file after the workload, and it drives the run instead of -u/-r/-t
(`make bench` runs its mix this way)::

    BENCH_USERS=40 locust -f loadtests/locustfile.py,loadtests/shape.py --headless

A step load shows where the system bends: each step holds a fixed number of
users long enough for its throughput and latency to settle, so the stats
history reads as "N users gave X requests/s at Y ms". The shape is configured
by environment variables because Locust imports the locustfile itself and
leaves us no other channel into it (``loadtests.bench`` sets them):

    BENCH_USERS        users at the top step            (default 20)
    BENCH_STEP_USERS   users added at each step          (default 5)
    BENCH_STEP_S       seconds each step lasts           (default 10)
    BENCH_RUN_S        seconds of the whole run          (default 60)
"""
import os
from dataclasses import dataclass

from locust import LoadTestShape


@dataclass(frozen=True)
class StepSettings:
    users: int = 20
    step_users: int = 5
    step_s: float = 10.0
    run_s: float = 60.0

    @classmethod
    def from_environment(cls, environ=None):
        environ = os.environ if environ is None else environ
        defaults = cls()
        return cls(users=int(environ.get("BENCH_USERS", defaults.users)),
                   step_users=int(environ.get("BENCH_STEP_USERS", defaults.step_users)),
                   step_s=float(environ.get("BENCH_STEP_S", defaults.step_s)),
                   run_s=float(environ.get("BENCH_RUN_S", defaults.run_s)))

    def users_at(self, elapsed_s):
        """How many users should run ``elapsed_s`` into the run; None once it is over."""
        if elapsed_s >= self.run_s:
            return None
        steps_begun = int(elapsed_s // self.step_s) + 1
        return min(self.users, self.step_users * steps_begun)

    @property
    def spawn_rate_per_s(self):
        # Each step's users arrive within about a second, so a step is mostly steady load.
        return max(1, self.step_users)


class StepLoadShape(LoadTestShape):
    """Locust calls tick() about once a second; it answers (users, spawn rate) or None."""

    settings = StepSettings.from_environment()

    def tick(self):
        users = self.settings.users_at(self.get_run_time())
        if users is None:
            return None
        return users, self.settings.spawn_rate_per_s
