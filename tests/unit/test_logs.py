"""What a library prints to stderr in a service process joins the JSON log."""
import json
import logging
import traceback

from shared.logs import JsonFormatter, StrayOutput


class Collect(logging.Handler):
    def __init__(self):
        super().__init__()
        self.setFormatter(JsonFormatter("ledger"))
        self.lines = []

    def emit(self, record):
        self.lines.append(self.format(record))


def test_a_printed_traceback_becomes_json_log_lines():
    logger = logging.getLogger("test.stderr")
    collect = Collect()
    logger.addHandler(collect)
    try:
        stray = StrayOutput(logger)
        try:
            raise ValueError("lost connection")
        except ValueError as error:
            traceback.print_exception(error, file=stray)
        entries = [json.loads(line) for line in collect.lines]  # every line is JSON
        assert entries[0]["message"] == "Traceback (most recent call last):"
        assert entries[-1]["message"] == "ValueError: lost connection"
        assert {entry["level"] for entry in entries} == {"error"}
    finally:
        logger.removeHandler(collect)


def test_a_partial_line_waits_for_its_end():
    logger = logging.getLogger("test.stderr.partial")
    collect = Collect()
    logger.addHandler(collect)
    try:
        stray = StrayOutput(logger)
        stray.write("half a ")
        assert collect.lines == []
        stray.write("line\n")
        assert [json.loads(line)["message"] for line in collect.lines] == ["half a line"]
    finally:
        logger.removeHandler(collect)
