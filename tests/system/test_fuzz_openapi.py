"""The document and the server agree: schemathesis, run as an outside tester runs it, finds
nothing.

`st run <url>/openapi.json --checks all` with a registered user's bearer token: every check
(no 5xx; status codes, content types, headers and bodies as documented; schema-valid requests
accepted and schema-violating ones refused, ST202 and ST201), on positive and negative data,
in every phase: the documented examples, the coverage of each constraint's edges, fuzzing, and
the stateful phase that follows the document's links from each create to its reads.

The hooks (tests/support/fuzz_hooks.py) say what the document cannot: each well-formed
Idempotency-Key gets a unique tail (a reused key with another body is 422 by contract, a
refusal no document can express), and metadata keys are drawn within their documented limit
(OpenAPI 3.0 has no keyword for an object's keys).
"""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import FUZZ_RATE_PER_S
from tests.support.api import new_session

pytestmark = [pytest.mark.system, pytest.mark.timeout(1200)]

ROOT = Path(__file__).resolve().parents[2]

PHASES = "examples,coverage,fuzzing,stateful"
# Just under the test system's per-user rate limit (tests/conftest.py): each case is served,
# not answered 429 (documented, so a 429 would not fail the run, but it would test nothing).
RATE = "{}/s".format(FUZZ_RATE_PER_S)
# Cases per operation and phase beyond the documented examples and the coverage phase's
# edges (those are all run whatever this says): three keep the suite inside CI's time.
EXAMPLES = "3"


def test_schemathesis_with_every_check_and_phase_finds_nothing(system, tmp_path):
    caller = new_session(system)
    report = tmp_path / "report.json"
    completed = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "run", system.url + "/openapi.json",
         "--checks", "all", "--mode", "all", "--phases", PHASES,
         "--header", "Authorization: Bearer " + caller.tokens["access_token"],
         "--rate-limit", RATE, "--max-examples", EXAMPLES, "--seed", "20260301",
         "--request-timeout", "30", "--no-color", "--report", "json",
         "--report-json-path", str(report)],
        # Run from a directory of its own: schemathesis keeps a cache of what failed before
        # (.schemathesis/) where it runs, and each run starts afresh.
        cwd=tmp_path, env=dict(system.env, SCHEMATHESIS_HOOKS="tests.support.fuzz_hooks",
                               PYTHONPATH=str(ROOT)),
        capture_output=True, text=True, timeout=1100)
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output[-12000:]
    summary = output[output.rfind("SUMMARY"):]
    # Every operation was tested, in every phase, and many cases ran.
    tested = re.search(r"Selected: (\d+)/(\d+)\s+Tested: (\d+)", summary)
    assert tested and tested[1] == tested[2] == tested[3], summary
    for phase in ("Examples", "Coverage", "Fuzzing", "Stateful"):
        assert "✅ " + phase in summary, summary
    cases = int(re.search(r"(\d+) generated", summary)[1])
    assert cases > 300, summary
    assert json.loads(report.read_text()), "the JSON report is written"
