"""OpenTelemetry export of the spans of shared/tracing.py, over OTLP/HTTP with the JSON
encoding (POST <endpoint>/v1/traces), when ``tracing.otlp_endpoint`` is set.

Why not the OpenTelemetry SDK: the spans already exist here (W3C ids, one per worker
and per request), so all that is missing is their wire format; the SDK would bring its
own context machinery alongside ours, and its protobuf exporter a protobuf runtime.
Every OTLP/HTTP receiver (the OpenTelemetry Collector, Jaeger, Tempo) takes JSON.

Export never slows the work it describes: finished spans go into a bounded queue (the
oldest dropped, and counted, when a receiver falls behind) that a background thread
sends in batches; a receiver that fails is logged once per outage.
"""
import collections
import logging
import threading

import requests

log = logging.getLogger(__name__)

TRACES_PATH = "/v1/traces"
MAX_QUEUE = 4096
MAX_BATCH = 512
FLUSH_INTERVAL_S = 1.0
POST_TIMEOUT_S = 5.0

# OTLP's SpanKind and StatusCode values.
KINDS = {"internal": 1, "server": 2, "client": 3, "producer": 4, "consumer": 5}
STATUS_OK, STATUS_ERROR = 1, 2


def traces_url(endpoint):
    """``endpoint`` as the OTLP/HTTP traces URL: a base address gets /v1/traces."""
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith(TRACES_PATH) else endpoint + TRACES_PATH


def _value(value):
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    return {"stringValue": str(value)}


def _attributes(values):
    return [{"key": key, "value": _value(value)} for key, value in values.items()
            if value is not None]


def span_json(finished):
    """One finished span (tracing.Finished) in OTLP JSON (ids stay hex, as the spec says
    for JSON)."""
    span = finished.span
    entry = {
        "traceId": span.trace_id,
        "spanId": span.span_id,
        "name": finished.name,
        "kind": KINDS.get(finished.kind, KINDS["internal"]),
        "startTimeUnixNano": str(span.started_ns),
        "endTimeUnixNano": str(finished.ended_ns),
        "attributes": _attributes(finished.attributes),
        "status": ({"code": STATUS_ERROR, "message": finished.error}
                   if finished.error else {"code": STATUS_OK}),
    }
    if span.parent_id:
        entry["parentSpanId"] = span.parent_id
    return entry


def request_json(service, spans):
    return {"resourceSpans": [{
        "resource": {"attributes": _attributes({"service.name": service})},
        "scopeSpans": [{"scope": {"name": "paysys"},
                        "spans": [span_json(finished) for finished in spans]}],
    }]}


class OtlpExporter:
    """Sends the finished spans of this process to ``endpoint`` in the background."""

    def __init__(self, endpoint, service, interval_s=FLUSH_INTERVAL_S, max_queue=MAX_QUEUE):
        self.url = traces_url(endpoint)
        self.service = service
        self.interval_s = interval_s
        self.queue = collections.deque(maxlen=max_queue)
        self.dropped = 0
        self.session = requests.Session()
        self._failing = False
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="otlp-export", daemon=True)
        self._thread.start()

    def export(self, finished):
        if len(self.queue) == self.queue.maxlen:
            self.dropped += 1
        self.queue.append(finished)
        if len(self.queue) >= MAX_BATCH:
            self._wake.set()

    def _run(self):
        while True:
            self._wake.wait(self.interval_s)
            self._wake.clear()
            self.flush()

    def flush(self):
        while self.queue:
            batch = [self.queue.popleft() for _ in range(min(MAX_BATCH, len(self.queue)))]
            try:
                reply = self.session.post(self.url, json=request_json(self.service, batch),
                                          timeout=POST_TIMEOUT_S)
                reply.raise_for_status()
            except requests.RequestException as error:
                if not self._failing:
                    log.warning("OTLP export to %s failed (%s); spans are dropped until it "
                                "answers", self.url, error)
                    self._failing = True
                return
            if self._failing:
                log.info("OTLP export to %s answers again", self.url)
                self._failing = False
