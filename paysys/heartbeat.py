"""The heartbeat a service process keeps, and `paysys health`, the check that reads it.

Containers and pods must ask the process itself whether it serves, not the service: an
RPC to ``ledger.health`` is answered by any ledger replica, so a wedged one would pass.
So each process rewrites a small JSON file every ``BEAT_S`` seconds, and the image's
HEALTHCHECK (and the pods' probes) read it, without a network round trip:

- ``loop_at``: a green thread of the process ran. A hub blocked by a C call, or a
  process that stopped scheduling, stops it. This alone is liveness (``--live``).
- ``consuming_at``: the process's AMQP consumer (its RPC requests, replies and events)
  went round its loop, which kombu does at least once a second while it is connected to
  RabbitMQ and not at all while the broker is away. Fresh, the process serves.
- ``http``: the gateway's port; the check GETs ``/health`` there, from inside the
  container, so the HTTP server of this very process answers.
- ``metrics_port``: the process's metrics port (shared/metrics); the check GETs ``/livez``
  there (200 while its Nameko container runs), in ``--live`` mode too.

Only when ``PAYSYS_HEARTBEAT_FILE`` names the file (the image sets it); `make up` and the
tests write none.
"""
import json
import os
import time
from pathlib import Path

FILE_ENV = "PAYSYS_HEARTBEAT_FILE"
BEAT_S = 2
# A beat may be late under load (the hub runs every green thread in turn); five missed
# beats is no longer load.
MAX_AGE_S = 10
HTTP_TIMEOUT_S = 3


def heartbeat_file():
    """The configured file, or None when the process keeps no heartbeat."""
    value = os.environ.get(FILE_ENV, "").strip()
    return Path(value) if value else None


# --- In the service process -----------------------------------------------------------


class Heartbeat:
    """Watches a running ``nameko.runners.ServiceRunner`` and writes its heartbeat."""

    def __init__(self, path, process_name, runner):
        self.path = Path(path)
        self.process_name = process_name
        self.consuming_at = None
        self.http_port = None
        self.metrics = None  # the MetricsPort, whose port is known once the runner started
        for container in runner.containers:
            for extension in container.extensions:
                self._watch(extension)

    def _watch(self, extension):
        from nameko.messaging import QueueConsumer
        from nameko.web.server import WebServer

        from shared.metrics.server import MetricsPort

        if isinstance(extension, QueueConsumer):
            # kombu calls on_iteration once per turn of its consume loop; an instance
            # attribute wraps it for this process only.
            tick = extension.on_iteration

            def on_iteration():
                self.consuming_at = time.time()
                tick()

            extension.on_iteration = on_iteration
        elif isinstance(extension, WebServer):
            self.http_port = extension.bind_addr.port
        elif isinstance(extension, MetricsPort):
            self.metrics = extension

    def start(self):
        import eventlet

        self.path.parent.mkdir(parents=True, exist_ok=True)
        return eventlet.spawn(self._run)

    def _run(self):
        import eventlet

        while True:
            try:
                self.write()
            except OSError:
                pass  # a full or read-only disk: the check then says the beat is stale
            eventlet.sleep(BEAT_S)

    @property
    def metrics_port(self):
        serving = self.metrics is not None and self.metrics.socket is not None
        return self.metrics.port if serving else None

    def write(self):
        beat = {"process": self.process_name, "pid": os.getpid(), "loop_at": time.time(),
                "consuming_at": self.consuming_at, "http_port": self.http_port,
                "metrics_port": self.metrics_port}
        # Written aside and renamed: a reader never sees half a file.
        partial = self.path.with_name(self.path.name + ".tmp")
        partial.write_text(json.dumps(beat))
        os.replace(partial, self.path)


# --- In the check ---------------------------------------------------------------------


def problems(beat, now_s, max_age_s=MAX_AGE_S, live_only=False, http_get=None):
    """What is wrong with the process whose heartbeat is ``beat`` (empty: healthy)."""
    found = []
    loop_age_s = now_s - float(beat.get("loop_at") or 0)
    if loop_age_s > max_age_s:
        found.append("its event loop last ran {:.0f} s ago".format(loop_age_s))
    if beat.get("metrics_port"):
        reason = (http_get or _http_get)(int(beat["metrics_port"]), "/livez")
        if reason:
            found.append(reason)
    if live_only:
        return found
    if beat.get("consuming_at") is None:
        found.append("it has not consumed from RabbitMQ since it started")
    else:
        consume_age_s = now_s - float(beat["consuming_at"])
        if consume_age_s > max_age_s:
            found.append("its RabbitMQ consumer last ran {:.0f} s ago (broker away?)".format(
                consume_age_s))
    if beat.get("http_port"):
        reason = (http_get or _http_get)(int(beat["http_port"]), "/health")
        if reason:
            found.append(reason)
    return found


def _http_get(port, path):
    """Empty if GET ``path`` on the loopback ``port`` answers 200, else why not."""
    import urllib.request  # only a process with a port pays for it

    url = "http://127.0.0.1:{}{}".format(port, path)
    try:
        with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_S) as reply:
            return "" if reply.status == 200 else "{} answered {}".format(url, reply.status)
    except OSError as error:
        return "{} did not answer: {}".format(url, error)


def check(path, max_age_s=MAX_AGE_S, live_only=False):
    """``(healthy, message)`` for the process that writes the heartbeat at ``path``."""
    try:
        beat = json.loads(Path(path).read_text())
    except FileNotFoundError:
        return False, "no heartbeat at {} (the process has not started, or keeps none)".format(
            path)
    except (OSError, ValueError) as error:
        return False, "unreadable heartbeat at {}: {}".format(path, error)
    found = problems(beat, time.time(), max_age_s, live_only)
    name = "{} (pid {})".format(beat.get("process"), beat.get("pid"))
    if found:
        return False, "{}: {}".format(name, "; ".join(found))
    return True, "{}: {}".format(name, "alive" if live_only else "serving")
