"""Gauges measured when Prometheus scrapes, never on the money path: a backlog (rows
waiting in an outbox, pending transactions, deliveries due) is read by a bounded query
at scrape time, so the services pay nothing for it between scrapes.

A service declares its gauges once, at import (``gauge(...)``), and its provider attaches
a ``Source`` while its container runs: a function answering ``{gauge name: {label values:
value}}``. Each source is read at most once per ``min_interval_s`` (several Prometheus
servers, or a dashboard refreshing, cost the database one query per interval) and for
at most ``timeout_s``; a source that fails or times out is left out of that scrape (its
gauges go absent, which the alert rules treat as "no data") and counted in
``paysys_scrape_source_errors_total``.
"""
import logging
import threading
import time

import eventlet
from prometheus_client import Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from shared.metrics import REGISTRY

log = logging.getLogger(__name__)

# How many rows a backlog query counts at most: the count says "at least this many" past
# it, and the query stays an index scan of bounded length however far behind things are.
COUNT_LIMIT = 100_000

scrape_source_errors_total = Counter(
    "paysys_scrape_source_errors",
    "Scrape-time sources (backlog queries) that failed or timed out; their gauges were "
    "left out of that scrape",
    ["source"], registry=REGISTRY)


class Source:
    """``read()`` -> ``{gauge name: {label values tuple: value}}``, cached ``min_interval_s``."""

    def __init__(self, name, read, min_interval_s=5.0, timeout_s=3.0, clock=time.monotonic):
        self.name = name
        self.read = read
        self.min_interval_s = min_interval_s
        self.timeout_s = timeout_s
        self.clock = clock
        self.values = None
        self.read_at = None
        self.lock = threading.Lock()  # a green lock once eventlet has patched threading

    def current(self):
        """The values, read now if the last reading is older than ``min_interval_s``;
        None if reading failed."""
        with self.lock:
            now = self.clock()
            if self.read_at is None or now - self.read_at >= self.min_interval_s:
                self.read_at = now
                self.values = self._read()
            return self.values

    def _read(self):
        try:
            with eventlet.Timeout(self.timeout_s):
                return self.read()
        except (Exception, eventlet.Timeout) as error:  # noqa: BLE001 - a scrape never fails
            scrape_source_errors_total.labels(self.name).inc()
            log.warning("metrics: %s not read: %s: %s", self.name, type(error).__name__, error)
            return None


class ScrapedGauges(Collector):
    """Every scrape-time gauge of the process, and the sources that give their values."""

    def __init__(self):
        self.gauges = {}  # name -> (documentation, label names)
        self.sources = []

    def gauge(self, name, documentation, labelnames=()):
        """Declare a gauge (once per process; declaring it again is harmless)."""
        self.gauges[name] = (documentation, tuple(labelnames))
        return name

    def attach(self, source):
        self.sources.append(source)
        return source

    def detach(self, source):
        if source in self.sources:
            self.sources.remove(source)

    def describe(self):
        return [GaugeMetricFamily(name, doc, labels=labels)
                for name, (doc, labels) in self.gauges.items()]

    def collect(self):
        families = {name: GaugeMetricFamily(name, doc, labels=labels)
                    for name, (doc, labels) in self.gauges.items()}
        for source in list(self.sources):
            for name, samples in (source.current() or {}).items():
                for label_values, value in samples.items():
                    families[name].add_metric([str(v) for v in label_values], value)
        return list(families.values())


SCRAPED = ScrapedGauges()
REGISTRY.register(SCRAPED)
gauge = SCRAPED.gauge
