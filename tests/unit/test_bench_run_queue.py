"""How long a process waited for a CPU, as `make bench` reads it from /proc and reports
it (loadtests/bench_costs.py ``run_queue_s``, loadtests/bench_transfers.py)."""
import os
import subprocess
import sys
import time

import pytest

from loadtests.bench_costs import Costs, run_queue_s
from loadtests.bench_transfers import run_queue_lines

BURN = "while True: pass"
SLEEP = "import time; time.sleep(60)"


@pytest.fixture
def children():
    started = []

    def start(code):
        child = subprocess.Popen([sys.executable, "-c", code])
        started.append(child)
        return child

    yield start
    for child in started:
        child.kill()
        child.wait()


def waited_over(pids, seconds):
    before = [run_queue_s(pid) for pid in pids]
    time.sleep(seconds)
    return [run_queue_s(pid) - was for pid, was in zip(pids, before)]


def test_two_processes_sharing_one_cpu_each_wait_while_the_other_runs(children):
    one_cpu = {min(os.sched_getaffinity(0))}
    burners = [children(BURN), children(BURN)]
    for burner in burners:
        os.sched_setaffinity(burner.pid, one_cpu)
    time.sleep(0.2)

    waited = waited_over([burner.pid for burner in burners], 1.5)

    # Each runs about half the time and waits the other half (more on a busy machine).
    assert all(seconds > 0.4 for seconds in waited), waited


def test_a_process_that_sleeps_hardly_waits(children):
    sleeper = children(SLEEP)
    time.sleep(0.2)

    [waited] = waited_over([sleeper.pid], 1.0)

    assert waited < 0.1


def test_a_process_that_is_not_there_has_no_figure():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()

    assert run_queue_s(child.pid) is None


def test_the_report_gives_the_wait_per_transfer_and_against_the_cpu():
    figures = Costs(completed=100, window_s=1.0, elapsed_s=1.0, rpc_calls=0, commits=0,
                    cpu_ms={"gateway": 150.0, "ledger": 100.0, "postgresql": 50.0},
                    run_queue_ms={"gateway": 120.0, "ledger": 60.0, "postgresql": None}
                    ).figures()

    assert figures["run_queue_ms_per_transfer"] == {"gateway": 1.2, "ledger": 0.6}
    assert figures["run_queue_ms_per_transfer_total"] == 1.8
    heading, line = run_queue_lines({"half": figures})[1:]
    assert heading.startswith("Waiting for a CPU")
    assert line == "  half            all 1.8 (0.6 ms for each ms of CPU): gateway 1.2, ledger 0.6"


def test_no_line_where_the_kernel_does_not_say():
    figures = Costs(completed=100, window_s=1.0, elapsed_s=1.0, rpc_calls=0, commits=0,
                    cpu_ms={"gateway": 150.0}, run_queue_ms={"gateway": None}).figures()

    assert figures["run_queue_ms_per_transfer_total"] is None
    assert run_queue_lines({"half": figures}) == []
