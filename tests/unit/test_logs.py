"""What a library prints to stderr in a service process joins the JSON log; the log's
lines leave the process in batches."""
import json
import logging
import traceback

import pytest

from shared.logs import BufferedLines, JsonFormatter, StrayOutput


class Collect(logging.Handler):
    def __init__(self):
        super().__init__()
        self.setFormatter(JsonFormatter("ledger"))
        self.lines = []

    def emit(self, record):
        self.lines.append(self.format(record))


@pytest.fixture
def collected():
    """``(StrayOutput, the JSON lines it led to)``."""
    logger = logging.getLogger("test.stderr")
    collect = Collect()
    logger.addHandler(collect)
    yield StrayOutput(logger), collect.lines
    logger.removeHandler(collect)


def test_a_printed_traceback_becomes_json_log_lines(collected):
    stray, lines = collected
    try:
        raise ValueError("lost connection")
    except ValueError as error:
        traceback.print_exception(error, file=stray)
    entries = [json.loads(line) for line in lines]  # every line is JSON
    assert entries[0]["message"] == "Traceback (most recent call last):"
    assert entries[-1]["message"] == "ValueError: lost connection"
    assert {entry["level"] for entry in entries} == {"error"}


def test_a_partial_line_waits_for_its_end(collected):
    stray, lines = collected
    stray.write("half a ")
    assert lines == []
    stray.write("line\n")
    assert [json.loads(line)["message"] for line in lines] == ["half a line"]


class _Context:
    """What CorrelationId reads of a Nameko worker context."""

    def __init__(self, entrypoint, data=None):
        self.service_name = "auth"
        self.entrypoint = entrypoint
        self.data = data if data is not None else {}


def _rpc_entrypoint(method_name):
    from nameko.rpc import Rpc

    entrypoint = Rpc.__new__(Rpc)
    entrypoint.method_name = method_name
    return entrypoint


@pytest.mark.parametrize("error,level", [
    (None, None), ("unauthorized", None), ("unavailable", "WARNING"), ("bug", "WARNING"),
])
def test_rpc_lines_are_debug_unless_the_call_failed_unexpectedly(caplog, error, level):
    from shared.errors import ServiceUnavailable, Unauthorized
    from shared.logs import CorrelationId

    provider = CorrelationId()
    context = _Context(_rpc_entrypoint("login"),
                       {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"})
    raised = {"unauthorized": Unauthorized("no"), "unavailable": ServiceUnavailable("db"),
              "bug": KeyError("x")}.get(error)
    caplog.set_level(logging.INFO, logger="shared.logs")
    provider.get_dependency(context)
    provider.worker_setup(context)
    # The worker is a span of the caller's trace, and hands its own on.
    assert context.data["traceparent"].startswith("00-4bf92f3577b34da6a3ce929d0e0e4736-")
    assert not context.data["traceparent"].endswith("00f067aa0ba902b7-01")
    exc_info = (type(raised), raised, None) if raised is not None else None
    provider.worker_result(context, None, exc_info)
    provider.worker_teardown(context)
    levels = [record.levelname for record in caplog.records if record.name == "shared.logs"]
    assert levels == ([level] if level else [])


def test_info_lines_leave_together_warnings_at_once_and_the_rest_at_close(tmp_path):
    """Written to a file opened as PYTHONUNBUFFERED opens stdout (every write goes out at
    once), the log still holds info lines back until something flushes them."""
    path = tmp_path / "service.log"
    logger = logging.getLogger("test.buffered")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    with open(path, "w", encoding="utf-8", buffering=1) as stdout:
        stdout.reconfigure(write_through=True)
        handler = BufferedLines(stdout, flush_every_s=3600)
        logger.addHandler(handler)
        try:
            logger.warning("started")
            logger.info("a request")
            logger.info("another")
            assert path.read_text() == "started\n"

            logger.warning("a dependency is down")
            assert path.read_text() == "started\na request\nanother\na dependency is down\n"

            logger.info("stopping")
            handler.close()
            assert path.read_text().endswith("down\nstopping\n")
        finally:
            logger.removeHandler(handler)
