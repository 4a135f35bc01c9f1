"""W3C Trace Context (``traceparent``): which trace a piece of work belongs to.

    traceparent: 00-<trace id: 32 hex>-<parent span id: 16 hex>-<flags: 2 hex>

The gateway continues the trace of a request that sends a valid ``traceparent`` and
starts a new one for any other request. Every worker (an HTTP request, an RPC, an
event) is a span of its own: its context data carries the traceparent of the span that
called it (Nameko copies a worker's context data into the headers of each RPC and event
it sends), and the worker replaces it with its own before it calls anyone. Work that
travels through a table first (an outbox event, a posting mirrored to Kafka) carries
the traceparent in the row, so the trace goes on where the row is read.

``TraceLogFilter`` puts the current trace id into every log record of the process.
With ``tracing.otlp_endpoint`` set, finished spans are exported over OTLP
(shared/otlp.py, ``configure_export``); by default nothing is.
"""
import logging
import random
import re
import threading
import time
from dataclasses import dataclass, field

TRACEPARENT_KEY = "traceparent"  # context data key, event field and HTTP header
HEADER = "traceparent"

_TRACEPARENT = re.compile(
    r"^(?P<version>[0-9a-f]{2})-(?P<trace_id>[0-9a-f]{32})-(?P<span_id>[0-9a-f]{16})"
    r"-(?P<flags>[0-9a-f]{2})(?P<rest>-.*)?$")
_INVALID_TRACE_ID = "0" * 32
_INVALID_SPAN_ID = "0" * 16
SAMPLED = "01"

# Greenthread-local once eventlet has monkey-patched threading.
_current = threading.local()


@dataclass(frozen=True)
class Span:
    """One span: its trace, its own id, and the span that called it (None at the root)."""

    trace_id: str
    span_id: str
    parent_id: str = None
    flags: str = SAMPLED
    started_ns: int = field(default_factory=time.time_ns, compare=False)

    @property
    def traceparent(self):
        """The header a callee continues this span's trace from."""
        return "00-{}-{}-{}".format(self.trace_id, self.span_id, self.flags)


def parse(header):
    """``(trace_id, parent span id, flags)`` of a valid traceparent, else None.

    Version 00 must have exactly four fields; a later version may add fields after them
    (the spec: read what you know). Version ff and all-zero ids are invalid."""
    if not isinstance(header, str):
        return None
    match = _TRACEPARENT.match(header.strip())
    if match is None:
        return None
    version, trace_id, span_id, flags, rest = match.group(
        "version", "trace_id", "span_id", "flags", "rest")
    if version == "ff" or (version == "00" and rest):
        return None
    if trace_id == _INVALID_TRACE_ID or span_id == _INVALID_SPAN_ID:
        return None
    return trace_id, span_id, flags


# Ids need to be unique, not secret (OpenTelemetry's SDK draws them the same way): no
# system call per worker, as os.urandom would cost.
def new_span_id():
    return "{:016x}".format(random.getrandbits(64) or 1)


def new_trace_id():
    return "{:032x}".format(random.getrandbits(128) or 1)


def child_of(traceparent):
    """A new span continuing ``traceparent``'s trace, or the root of a new trace when
    ``traceparent`` is missing or invalid."""
    parsed = parse(traceparent)
    if parsed is None:
        return Span(new_trace_id(), new_span_id())
    trace_id, parent_id, flags = parsed
    return Span(trace_id, new_span_id(), parent_id, flags)


def current_span():
    return getattr(_current, "span", None)


def current_traceparent():
    """The traceparent of the span running now, for what it hands on (None outside one)."""
    span = current_span()
    return span.traceparent if span is not None else None


def enter(span):
    """Make ``span`` current; what was current before (give it back to ``leave``)."""
    outer = current_span()
    _current.span = span
    return outer


def leave(outer):
    _current.span = outer


class traced:
    """``with traced(traceparent, name):`` — the block is a span continuing
    ``traceparent`` (a new trace when it is None or invalid), e.g. a batch's work; a
    named one is exported when it ends (if export is on)."""

    def __init__(self, traceparent, name=None, attributes=None):
        self.span = child_of(traceparent)
        self.name = name
        self.attributes = attributes or {}
        self.outer = None

    def __enter__(self):
        self.outer = enter(self.span)
        return self.span

    def __exit__(self, exc_type, exc, tb):
        leave(self.outer)
        if self.name:
            finish(self.span, self.name, "internal", self.attributes,
                   error=type(exc).__name__ if exc is not None else None)


# --- Export (OTLP) ----------------------------------------------------------------

_exporter = None


@dataclass(frozen=True)
class Finished:
    """A span that ended: what an exporter sends."""

    span: Span
    name: str
    kind: str  # internal, server, client, producer, consumer
    attributes: dict
    error: str = None
    ended_ns: int = field(default_factory=time.time_ns)


def finish(span, name, kind, attributes=None, error=None):
    """``span`` ended: export it if export is on (cheap when it is off)."""
    if _exporter is not None and span is not None:
        _exporter.export(Finished(span, name, kind, dict(attributes or {}), error))


def configure_export(tracing, service):
    """Export this process's spans to ``tracing.otlp_endpoint`` if it is set (empty: off);
    ``tracing``: the shared settings' tracing section."""
    global _exporter
    endpoint = tracing.otlp_endpoint.strip()
    if not endpoint:
        _exporter = None
        return None
    from shared.otlp import OtlpExporter  # only a process that exports needs it

    _exporter = OtlpExporter(endpoint, service)
    return _exporter


def trace_id_of(traceparent):
    parsed = parse(traceparent)
    return parsed[0] if parsed else None


def trace_ids(traceparents):
    """The distinct trace ids of ``traceparents`` (None and invalid ones left out), sorted:
    what a batch line names so each request's trace finds it."""
    return sorted({trace_id for trace_id in map(trace_id_of, traceparents) if trace_id})


def batch_span(traceparents, name=None):
    """``with batch_span(items' traceparents):`` — work done for a batch of items: it
    continues their trace when they all share one (a lone request's batch reads as part of
    that request), else it is a trace of its own and names theirs (``trace_ids``)."""
    distinct = {trace_id_of(tp): tp for tp in traceparents if trace_id_of(tp)}
    return traced(next(iter(distinct.values())) if len(distinct) == 1 else None, name,
                  {"paysys.batch.traces": len(distinct)})


class TraceLogFilter(logging.Filter):
    """Adds ``trace_id`` and ``span_id`` (None outside a span) to every record."""

    def filter(self, record):
        span = current_span()
        record.trace_id = span.trace_id if span is not None else None
        record.span_id = span.span_id if span is not None else None
        return True
