"""``MetricsPort``: the process's own HTTP port for Prometheus and liveness probes.

    GET /metrics   the process's registry, Prometheus text (or OpenMetrics if asked)
    GET /livez     200 while the process's Nameko container runs, else 503

A small eventlet WSGI server in a managed thread of the container: it holds no worker
slot, so a process whose workers are all busy still answers its probes, and a hub that
is blocked (a C call that never yields) answers nothing, which is what a liveness probe
must notice. The port is bound in ``setup``, so a port already taken stops the process
at start with a message naming the setting, rather than leaving it unobservable.
"""
import logging

import eventlet
import eventlet.wsgi
from nameko.extensions import DependencyProvider
from prometheus_client import make_wsgi_app

from shared.catalog import process_name_of
from shared.metrics import REGISTRY
from shared.metrics.ports import metrics_host, metrics_port

log = logging.getLogger(__name__)

# Prometheus and a probe or two: a handful of connections at once is plenty, and a bound
# keeps a flood of them from costing the service its memory.
MAX_CONNECTIONS = 16
SOCKET_TIMEOUT_S = 10


class _Silent:
    """eventlet.wsgi writes a line per request unless given a log; scrapes are not news."""

    def write(self, data):
        pass


def liveness_app(is_alive, metrics_app):
    """The WSGI app of the port: /livez from ``is_alive()``, /metrics from ``metrics_app``."""

    def app(environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path == "/livez":
            alive = is_alive()
            body = b"alive\n" if alive else b"not running\n"
            start_response("200 OK" if alive else "503 Service Unavailable",
                           [("Content-Type", "text/plain; charset=utf-8"),
                            ("Content-Length", str(len(body)))])
            return [body] if environ.get("REQUEST_METHOD") != "HEAD" else []
        if path == "/metrics":
            return metrics_app(environ, start_response)
        body = b"GET /metrics or GET /livez\n"
        start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8"),
                                         ("Content-Length", str(len(body)))])
        return [body]

    return app


class MetricsPort(DependencyProvider):
    """Serves the process's metrics and liveness on its metrics port (shared/metrics/ports.py)
    while the container runs; nothing when the port is switched off."""

    def __init__(self):
        self.port = None
        self.socket = None
        self.thread = None

    def setup(self):
        config = self.container.config
        self.port = metrics_port(config, process_name_of(self.container))
        if self.port is None:
            return
        host = metrics_host(config)
        try:
            # No SO_REUSEPORT (eventlet's default where it exists): a second process on the
            # same port must fail here, not silently share the port's connections.
            self.socket = eventlet.listen((host, self.port), reuse_port=False)
        except OSError as error:
            raise RuntimeError("{}: cannot serve metrics on {}:{} ({}); another process has "
                               "it, or set PAYSYS_METRICS_PORT_BASE (0: no metrics port)".format(
                                   process_name_of(self.container), host, self.port,
                                   error)) from None

    def start(self):
        if self.socket is None:
            return
        app = liveness_app(self._alive, make_wsgi_app(REGISTRY))
        self.thread = self.container.spawn_managed_thread(
            lambda: eventlet.wsgi.server(self.socket, app, log=_Silent(), log_output=False,
                                         max_size=MAX_CONNECTIONS,
                                         socket_timeout=SOCKET_TIMEOUT_S),
            identifier="{}.metrics_port".format(self.container.service_name))
        log.debug("metrics and liveness on port %d", self.port)

    def _alive(self):
        container = self.container
        return bool(container.started) and not container._died.ready()

    def stop(self):
        if self.thread is not None:
            self.thread.kill()
            self.thread = None
        if self.socket is not None:
            self.socket.close()
            self.socket = None

    def kill(self):
        self.stop()
