"""Runs one headless Locust run in a child process, its CSVs and log in the report folder.

A child process, not Locust's library API: Locust patches the interpreter with
gevent, which must not leak into the benchmark's PostgreSQL threads, and the
child's CSVs and HTML are exactly what `locust` itself writes.

The child runs in loadtests/, so the repository's locust.conf (settings for people
running `locust` by hand) never mixes into a benchmark run: its command line says
everything.
"""
import os
import subprocess
import sys
from pathlib import Path

LOADTESTS = Path(__file__).resolve().parent
REPOSITORY = LOADTESTS.parent
WORKLOAD = LOADTESTS / "locustfile.py"
STEP_SHAPE = LOADTESTS / "shape.py"
HEALTH_ONLY = LOADTESTS / "health_locustfile.py"
LOCUST_START_S = 5  # Locust's start-up and shutdown, added to the expected time of a run


def locust_command(locustfile, url, csv_prefix, html_path=None, users=None, spawn_rate=None,
                   run_s=None, shape=None):
    """The command line; users/spawn_rate/run_s, or a ``shape`` module that sets them."""
    files = ",".join(str(Path(path).resolve()) for path in filter(None, (locustfile, shape)))
    command = [sys.executable, "-m", "locust", "-f", files, "--headless",
               "--host", url, "--csv", str(Path(csv_prefix).resolve()), "--csv-full-history",
               "--only-summary", "--exit-code-on-error", "0"]
    if html_path:
        command += ["--html", str(Path(html_path).resolve())]
    if users is not None:
        command += ["--users", str(users), "--spawn-rate", str(spawn_rate),
                    "--run-time", "{}s".format(int(run_s))]
    return command


def start_locust(command, log_path, extra_environment):
    """Start the child; its output goes to ``log_path``. The Popen."""
    environment = dict(os.environ, **extra_environment)
    # The locustfiles import loadtests.*, which is not an installed package.
    environment["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(REPOSITORY), environment.get("PYTHONPATH")]))
    log = open(log_path, "w", encoding="utf-8")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                               env=environment, cwd=str(LOADTESTS))
    log.close()  # the child has its own descriptor
    return process
