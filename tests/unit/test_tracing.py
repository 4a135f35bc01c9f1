"""W3C traceparent: a valid one is continued, anything else starts a new trace, and every
log line names the trace it belongs to."""
import json
import logging

import pytest

from harness import servers
from gateway.probes import RabbitProbe
from shared import tracing
from shared.logs import JsonFormatter

VALID = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_a_valid_traceparent_is_continued_by_a_span_of_its_own():
    span = tracing.child_of(VALID)
    assert span.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert span.parent_id == "00f067aa0ba902b7"
    assert span.span_id != span.parent_id and len(span.span_id) == 16
    assert span.traceparent == "00-4bf92f3577b34da6a3ce929d0e0e4736-{}-01".format(span.span_id)


@pytest.mark.parametrize("header", [
    None, "", "garbage", VALID.upper(), VALID + "-extra",
    "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
    "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
    "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
])
def test_a_missing_or_invalid_traceparent_starts_a_new_trace(header):
    span = tracing.child_of(header)
    assert span.parent_id is None
    assert tracing.parse(span.traceparent) == (span.trace_id, span.span_id, "01")
    assert span.trace_id != "4bf92f3577b34da6a3ce929d0e0e4736"


def test_a_later_version_may_carry_more_fields():
    assert tracing.parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-more") == (
        "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", "01")


def test_log_lines_carry_the_current_trace_id():
    lines = []

    class Collect(logging.Handler):
        def emit(self, record):
            lines.append(json.loads(self.format(record)))

    handler = Collect()
    handler.setFormatter(JsonFormatter("ledger"))
    handler.addFilter(tracing.TraceLogFilter())
    logger = logging.getLogger("test.tracing")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        logger.info("outside")
        with tracing.traced(VALID) as span:
            logger.info("inside")
    finally:
        logger.removeHandler(handler)
    assert "trace_id" not in lines[0]
    assert lines[1]["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert lines[1]["span_id"] == span.span_id
    assert tracing.current_span() is None


def test_the_rabbitmq_probe_keeps_its_connection_and_makes_a_new_one_after_a_failure():
    probe = RabbitProbe("pyamqp://guest:guest@127.0.0.1:5672/", timeout_s=5)
    try:
        probe()
        first = probe.connection
        probe()
        probe()
        assert probe.connection is first
    finally:
        probe.close()
    dead = RabbitProbe("pyamqp://guest:guest@127.0.0.1:{}/".format(servers.free_port()), 2)
    with pytest.raises(Exception):
        dead()
    assert dead.connection is None


def test_a_relayed_batch_continues_its_events_trace_only_when_they_share_one():
    from shared.outbox_relay.events import batch_traceparent

    other = "00-{}-00f067aa0ba902b7-01".format("a" * 32)
    assert batch_traceparent([{"traceparent": VALID}, {"traceparent": VALID}]) == VALID
    assert batch_traceparent([{"traceparent": VALID}, {}]) == VALID
    assert batch_traceparent([{"traceparent": VALID}, {"traceparent": other}]) is None
    assert batch_traceparent([{}, {"traceparent": "garbage"}]) is None
    with tracing.batch_span([VALID, None]) as span:
        assert span.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
    with tracing.batch_span([VALID, other]) as span:
        assert span.trace_id not in (VALID.split("-")[1], "a" * 32)
    assert tracing.trace_ids([other, VALID, None, VALID]) == [
        "4bf92f3577b34da6a3ce929d0e0e4736", "a" * 32]
