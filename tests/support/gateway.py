"""One more gateway process for the running test system, with settings of its own.

The gateway keeps nothing of its own (docs/architecture.md: any number of them serve behind a balancer),
so a second one joins the system's RabbitMQ, PostgreSQL and Redis like the first. A test
gives it what the shared system must not have, such as rate limits a handful of requests
exhausts while the bucket refills once an hour: what it then allows depends on the counts,
not on how fast this machine sends."""
import subprocess
import sys
from contextlib import contextmanager

import requests

from harness.sandbox import ROOT, random_client_ip
from harness.servers import free_port, wait_for


class Gateway:
    def __init__(self, url):
        self.url = url

    def get(self, path, headers=None, **kwargs):
        """A GET from a random client address unless ``headers`` name one."""
        headers = dict(headers or {})
        headers.setdefault("X-Forwarded-For", random_client_ip())
        return requests.get(self.url + path, headers=headers, timeout=30, **kwargs)

    def healthy(self):
        try:
            return self.get("/health").status_code == 200
        except requests.RequestException:
            return False


@contextmanager
def another_gateway(system, **settings):
    """A started gateway process of ``system`` with the ``PAYSYS_*`` ``settings``; stopped
    on the way out."""
    port = free_port()
    # No metrics port: the system's gateway has the one of the process name "gateway".
    env = dict(system.env, PAYSYS_GATEWAY_ADDRESS="127.0.0.1:{}".format(port),
               PAYSYS_METRICS_PORT_BASE="0")
    env.update(settings)
    log_path = system.run_dir / "logs" / "gateway_{}.log".format(port)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        process = subprocess.Popen([sys.executable, "-m", "paysys.runner", "gateway"],
                                   env=env, cwd=ROOT, stdout=log, stderr=log)
    gateway = Gateway("http://127.0.0.1:{}".format(port))
    try:
        wait_for(lambda: gateway.healthy() or process.poll() is not None, 60,
                 interval_s=0.2, what="the second gateway answering")
        assert process.poll() is None, log_path.read_text()[-2000:]
        yield gateway
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
