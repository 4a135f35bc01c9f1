"""Structured JSON logs that carry the request's correlation id.

The gateway gives every HTTP request a correlation id (the client's
``X-Request-ID`` or a new one). Nameko copies a worker's context data into the
headers of each RPC call and event it makes, so the id reaches every service a
request touches; ``CorrelationId`` puts it where the log formatter finds it.
"""
import io
import json
import logging
import sys
import threading
import time
import uuid
import weakref

from nameko.extensions import DependencyProvider
from nameko.events import EventHandler
from nameko.rpc import Rpc
from nameko.timer import Timer

from shared import tracing, work_counters
from shared.errors import PaysysError

CORRELATION_ID_KEY = "correlation_id"
# Info lines reach the log at most this late (warnings and errors at once).
FLUSH_EVERY_S = 0.5
# What the log's own buffer holds before it is written anyway: a few hundred lines.
LOG_BUFFER_BYTES = 64 * 1024

# Greenthread-local once eventlet has monkey-patched threading.
_current = threading.local()


def current_correlation_id():
    return getattr(_current, "correlation_id", None)


def new_correlation_id():
    return uuid.uuid4().hex


class correlated:
    """``with correlated(correlation_id):`` — the logs of a provider's own work (a batch, a
    background loop) carry that work's id, as a worker's carry its request's."""

    def __init__(self, correlation_id):
        self.correlation_id = correlation_id
        self.outer = None

    def __enter__(self):
        self.outer = current_correlation_id()
        _current.correlation_id = self.correlation_id
        return self.correlation_id

    def __exit__(self, *exc_info):
        _current.correlation_id = self.outer


log = logging.getLogger(__name__)


class CorrelationId(DependencyProvider):
    """Makes the worker's correlation id current for its logs, makes sure it has one,
    makes the worker a span of the trace its caller sent (shared/tracing.py: the
    ``traceparent`` in its context data, handed on as the worker's own), and logs one
    line per finished worker (entrypoint, outcome, duration)."""

    def __init__(self):
        self._started_s = weakref.WeakKeyDictionary()
        self._outer_spans = weakref.WeakKeyDictionary()

    def get_dependency(self, worker_ctx):
        # Nameko injects dependencies before it calls worker_setup.
        return worker_ctx.data.setdefault(CORRELATION_ID_KEY, new_correlation_id())

    def worker_setup(self, worker_ctx):
        self._started_s[worker_ctx] = time.perf_counter()
        _current.correlation_id = worker_ctx.data[CORRELATION_ID_KEY]
        span = tracing.child_of(worker_ctx.data.get(tracing.TRACEPARENT_KEY))
        # What this worker calls or dispatches is a child of its span.
        worker_ctx.data[tracing.TRACEPARENT_KEY] = span.traceparent
        self._outer_spans[worker_ctx] = tracing.enter(span)

    def worker_result(self, worker_ctx, result=None, exc_info=None):
        started_s = self._started_s.pop(worker_ctx, None)
        _finish_span(worker_ctx, exc_info)
        if isinstance(worker_ctx.entrypoint, Rpc):
            work_counters.count(work_counters.RPCS_SERVED)
        if exc_info is None and isinstance(worker_ctx.entrypoint, Timer):
            return  # background ticks (relays, recovery) speak only when they fail
        duration_ms = (time.perf_counter() - started_s) * 1000 if started_s else None
        # A line per worker (RPC, event, HTTP handler) only at debug level: the gateway
        # writes one access line per HTTP request (gateway/access_log.py), the batches log
        # themselves, and at hundreds a second an info line each costs more than the work.
        # A failure that is not an answer to the client (a bug, or a 5xx such as a dead
        # dependency) is a warning; a refusal (4xx) is the service doing its job.
        unexpected = exc_info is not None and (
            not isinstance(exc_info[1], PaysysError) or exc_info[1].status >= 500)
        level = logging.WARNING if unexpected else logging.DEBUG
        if not log.isEnabledFor(level):
            return
        log.log(level, "%s.%s", worker_ctx.service_name, worker_ctx.entrypoint.method_name,
                extra={"fields": {
                    "outcome": "ok" if exc_info is None else exc_info[0].__name__,
                    "duration_ms": round(duration_ms, 3) if duration_ms is not None else None,
                }})

    def worker_teardown(self, worker_ctx):
        _current.correlation_id = None
        tracing.leave(self._outer_spans.pop(worker_ctx, None))


def _finish_span(worker_ctx, exc_info):
    """The worker's span ended: exported when export is on (timer ticks are not spans:
    background loops would drown the traces)."""
    entrypoint = worker_ctx.entrypoint
    if isinstance(entrypoint, Timer):
        return
    kind = ("consumer" if isinstance(entrypoint, EventHandler) else "server")
    tracing.finish(tracing.current_span(), "{}.{}".format(
        worker_ctx.service_name, entrypoint.method_name), kind,
        {"rpc.service": worker_ctx.service_name, "rpc.method": entrypoint.method_name,
         "paysys.correlation_id": worker_ctx.data.get(CORRELATION_ID_KEY)},
        error=exc_info[0].__name__ if exc_info is not None else None)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: what log shippers (Loki, ELK) read without parsing rules."""

    def __init__(self, service):
        super().__init__()
        self.service = service

    def format(self, record):
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + ".%03dZ" % record.msecs,
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        correlation_id = current_correlation_id()
        if correlation_id:
            entry[CORRELATION_ID_KEY] = correlation_id
        trace_id = getattr(record, "trace_id", None)
        if trace_id:
            entry["trace_id"] = trace_id
            entry["span_id"] = record.span_id
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        for key, value in getattr(record, "fields", {}).items():
            entry[key] = value
        return json.dumps(entry, default=str)


class StrayOutput:
    """A stand-in for ``sys.stderr``: what libraries print there themselves (eventlet's hub
    prints the traceback of a greenthread that died, for one) becomes log records, a line
    each, so the log stays one JSON object per line and nothing printed is lost."""

    def __init__(self, logger):
        self.logger = logger
        self.pending = ""
        self.writing = False

    def write(self, text):
        if self.writing:  # logging itself failed and reports it: straight out, no loop
            return sys.__stderr__.write(text)
        self.writing = True
        try:
            self.pending += text
            *lines, self.pending = self.pending.split("\n")
            for line in lines:
                if line.strip():
                    self.logger.error(line)
        finally:
            self.writing = False
        return len(text)

    def flush(self):
        pass

    def isatty(self):
        return False


class BufferedLines(logging.StreamHandler):
    """Writes each record into a buffer of its own in front of ``stream`` (whatever
    buffering the stream has) and flushes it only for warnings and worse, and
    otherwise at most every ``flush_every_s`` (a background flush catches what a quiet
    moment leaves behind): at hundreds of access-log lines a second, a system call per
    line cost the gateway more than the line itself."""

    def __init__(self, stream, flush_every_s=FLUSH_EVERY_S):
        super().__init__(_buffered(stream))
        self.flush_every_s = flush_every_s
        self._flushed_s = time.monotonic()
        flusher = threading.Thread(target=self._flush_now_and_then, name="log-flush",
                                   daemon=True)
        flusher.start()

    def flush(self):
        """``emit`` calls this after every record: a no-op; see ``emit``."""

    def emit(self, record):
        super().emit(record)
        now_s = time.monotonic()
        if record.levelno >= logging.WARNING or now_s - self._flushed_s >= self.flush_every_s:
            self._flush_stream(now_s)

    def _flush_stream(self, now_s):
        self._flushed_s = now_s
        with self.lock:
            if self.stream and hasattr(self.stream, "flush"):
                self.stream.flush()

    def close(self):
        # At exit logging.shutdown calls flush() (a no-op here), then close(): the lines
        # still buffered go out now.
        self._flush_stream(time.monotonic())
        super().close()

    def _flush_now_and_then(self):
        while True:
            time.sleep(self.flush_every_s)
            self._flush_stream(time.monotonic())


def _buffered(stream):
    """``stream`` (the process's stdout) behind a buffer of its own. The services run with
    PYTHONUNBUFFERED (supervisord's environment, the image's), which makes stdout write
    every line at once: a system call and a wake-up of the reader per access-log line.
    ``BufferedLines`` decides when lines go out. A stream without a file (a test's
    capture) is used as it is."""
    try:
        descriptor = stream.fileno()
    except (AttributeError, OSError, ValueError):
        return stream
    return io.TextIOWrapper(
        io.BufferedWriter(io.FileIO(descriptor, "w", closefd=False), LOG_BUFFER_BYTES),
        encoding="utf-8", errors="backslashreplace")


def configure_logging(service, level="INFO"):
    """Send every log record of this process to stdout as JSON lines, and what is printed
    to stderr with them."""
    handler = BufferedLines(sys.stdout)
    handler.setFormatter(JsonFormatter(service))
    handler.addFilter(tracing.TraceLogFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    sys.stderr = StrayOutput(logging.getLogger("stderr"))
    # kombu and nameko log every reconnect attempt at INFO/DEBUG; warnings are enough.
    for noisy in ("kombu", "amqp", "nameko", "kafka"):
        logging.getLogger(noisy).setLevel(max(logging.getLevelName(level), logging.WARNING))
    # Nameko logs each *expected* error (a 4xx to a client) as a warning with its
    # traceback; unexpected ones it logs as errors, which is what an operator needs.
    logging.getLogger("nameko.containers").setLevel(logging.ERROR)
