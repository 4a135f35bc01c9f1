"""What a library prints to stderr in a service process joins the JSON log."""
import json
import logging
import traceback

import pytest

from shared.logs import JsonFormatter, StrayOutput


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
