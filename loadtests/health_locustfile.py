"""Baseline: the gateway's bare HTTP ceiling — only GET /health, no auth, no RPC.

    locust -f loadtests/health_locustfile.py --headless -u 20 -r 5 -t 20s --host URL

Run with the same users and spawn rate as the real workload, it says how many
requests a second the HTTP layer alone (the gateway process, its web server
and this load generator on this machine) can answer, and at what latency; the
real workload's figures divided by these show what the rest of the system costs.
Users never pause between requests, as that is what a ceiling means.
"""
import itertools

from locust import FastHttpUser, constant, task

from loadtests.locustfile import client_address

USER_NUMBERS = itertools.count(1)


class HealthProbe(FastHttpUser):
    wait_time = constant(0)

    def on_start(self):
        # Same per-client addresses as the workload, so the same limits would apply.
        self.address = client_address(next(USER_NUMBERS))

    @task
    def health(self):
        self.client.get("/health", name="/health", headers={"X-Forwarded-For": self.address})
