"""Prometheus metrics of every service process: one registry per process
(prometheus_client's default, with its process and platform collectors), served on a port
of the process's own (server.py, ``MetricsPort``), never on the public API port.

- ports.py: which port a process serves them on (``metrics.port_base`` + its place in
  shared/catalog.py's ``process_names``);
- server.py: ``MetricsPort``, GET /metrics and GET /livez on that port;
- rpc.py: ``RpcMetrics``, the latency and errors of every RPC a process serves;
- scrape.py: gauges measured when Prometheus scrapes (backlogs), never on the money path;
- breakers.py: the state of every circuit breaker of the process.

``ServiceBase`` (shared/service.py) declares ``MetricsPort`` and ``RpcMetrics``, so every
service has both. docs/metrics.md lists every metric.
"""
from prometheus_client import REGISTRY, disable_created_metrics

# Counters and histograms get no ``_created`` series: one more series per label set that
# nobody graphs (Prometheus knows a reset from the counter itself).
disable_created_metrics()

__all__ = ["REGISTRY"]
