"""Prometheus instruments of the gateway: requests by route and status (a request no route
matched, 404 or 405, under route="unmatched"), and their latency. They live in the
process's registry (shared/metrics), served on the gateway's metrics port, and on the
API port's GET /metrics while ``gateway.api_metrics`` is on."""
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest

from shared.metrics import REGISTRY as registry

http_requests_total = Counter(
    "paysys_http_requests",
    "HTTP requests answered by the gateway",
    ["method", "route", "status"],
    registry=registry,
)
http_request_duration_seconds = Histogram(
    "paysys_http_request_duration_seconds",
    "Time from request to response, by route",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=registry,
)

rate_limit_skipped = Counter(
    "paysys_rate_limit_skipped",
    "Requests served without a rate-limit check because Redis did not answer (fail open)",
    ["scope"],
    registry=registry,
)


def observe_request(method, route, status, duration_s):
    labels = (method, route, str(status))
    http_requests_total.labels(*labels).inc()
    http_request_duration_seconds.labels(*labels).observe(duration_s)


def exposition():
    """``(body, content_type)`` of the Prometheus text format."""
    return generate_latest(registry), CONTENT_TYPE_LATEST
