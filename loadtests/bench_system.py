"""Finds the system the benchmark measures, starts it when it is down, stops it after.

A benchmark run from one machine looks to the gateway like one client on
127.0.0.1, which its per-IP limit (50/s) would throttle at once. So when the
benchmark starts the system itself it trusts X-Forwarded-For from loopback
(each simulated user sends its own address) and raises both rate limits far
above what one machine can send: the run then measures capacity, not the
limiter. A system that was already up keeps its own limits; the benchmark
says so and counts the 429s it gets.
"""
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

UNTHROTTLED_LIMIT_PER_S = "100000"
BENCHMARK_ENVIRONMENT = {
    "PAYSYS_TRUSTED_PROXIES": "127.0.0.1",
    "PAYSYS_RATE_LIMIT_IP_PER_S": UNTHROTTLED_LIMIT_PER_S,
    "PAYSYS_RATE_LIMIT_IP_BURST": UNTHROTTLED_LIMIT_PER_S,
    "PAYSYS_RATE_LIMIT_USER_PER_S": UNTHROTTLED_LIMIT_PER_S,
    "PAYSYS_RATE_LIMIT_USER_BURST": UNTHROTTLED_LIMIT_PER_S,
}


def configured_gateway_url():
    from shared.config import load_config

    return load_config()["gateway"]["public_url"].rstrip("/")


def configured_database_url():
    """The services' database, as their settings read it (with PostgreSQL HA, the URL
    naming both nodes: libpq reaches the primary)."""
    from shared.config import load_config
    from shared.settings import load
    from shared.shared_settings import SharedSettings

    return load(SharedSettings, load_config()).database.url


def is_ready(url, timeout_s=5):
    """True if GET /ready answers 200."""
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/ready", timeout=timeout_s) as reply:
            return reply.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _paysys(command, log_path, extra_environment=None):
    """Run `paysys <command>` (the console script beside this Python), output to ``log_path``."""
    executable = Path(sys.executable).with_name("paysys")
    environment = dict(os.environ, **(extra_environment or {}))
    with open(log_path, "a", encoding="utf-8") as log:
        log.write("$ paysys {}\n".format(command))
        log.flush()
        return subprocess.run([str(executable), command], stdout=log, stderr=subprocess.STDOUT,
                              env=environment, check=False).returncode


def start(log_path):
    """`paysys up` with the benchmark's environment; raises if it does not get ready."""
    started_s = time.monotonic()
    if _paysys("up", log_path, BENCHMARK_ENVIRONMENT) != 0:
        raise RuntimeError("`paysys up` failed; see {}".format(log_path))
    return time.monotonic() - started_s


def stop(log_path):
    return _paysys("down", log_path) == 0
