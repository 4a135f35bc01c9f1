"""Locust the usual way against a running system: `locust` from the repository reads
locust.conf (workload, host, users, spawn rate, run time), the command line's -u/-r/-t
and --tags are honoured, the web UI offers users, spawn rate and run time, and the step
shape of `make bench` runs only when named."""
import csv
import json
import os
import re
import subprocess
import sys

import requests

from harness.sandbox import ROOT
from harness.servers import free_port, wait_for

LOCUST = [sys.executable, "-m", "locust"]


def locust(args, env=None, timeout_s=180):
    """A headless Locust run from the repository's root, as a person types it."""
    completed = subprocess.run(LOCUST + args, cwd=ROOT, env=dict(os.environ, **(env or {})),
                               capture_output=True, text=True, timeout=timeout_s)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return completed


def rows(path):
    with open(path, newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def requested(prefix):
    """``{(method, name): request count}`` of a run's stats CSV (the Aggregated row out)."""
    return {(row["Type"], row["Name"]): int(row["Request Count"])
            for row in rows(str(prefix) + "_stats.csv") if row["Name"] != "Aggregated"}


def most_users(prefix):
    return max(int(row["User Count"]) for row in rows(str(prefix) + "_stats_history.csv"))


def test_headless_with_users_spawn_rate_run_time_and_tags(system, tmp_path):
    prefix = tmp_path / "reads"
    completed = locust(["--headless", "--host", system.url, "-u", "3", "-r", "3", "-t", "8s",
                        "--tags", "reads", "--csv", str(prefix), "--csv-full-history"])
    assert "shape" not in completed.stderr.lower()  # no shape took the run over
    counts = requested(prefix)
    # Each user set itself up (whatever the tags), then only read.
    assert counts[("POST", "/v1/auth/register")] == 3
    assert counts[("GET", "/v1/accounts/[id]")] > 0
    moved = {name for _, name in counts} & {
        "/v1/transfers", "/v1/payments [authorize]", "/v1/payments [one-step]"}
    assert moved == set()
    assert most_users(prefix) == 3


def test_tags_choose_the_money_moving_tasks(system, tmp_path):
    prefix = tmp_path / "transfers"
    locust(["--headless", "--host", system.url, "-u", "2", "-r", "2", "-t", "8s",
            "--tags", "transfers", "--csv", str(prefix)])
    counts = requested(prefix)
    assert counts[("POST", "/v1/transfers")] > 0
    assert not {name for _, name in counts} & {
        "/v1/accounts/[id]", "/v1/transactions", "/v1/payments [authorize]"}
    assert ("POST", "/v1/auth/login") in counts  # setup only: no 'auth' task ran
    assert counts[("POST", "/v1/auth/login")] == 2


def test_the_step_shape_runs_only_when_named(system, tmp_path):
    prefix = tmp_path / "steps"
    locust(["-f", "loadtests/locustfile.py,loadtests/shape.py", "--headless",
            "--host", system.url, "--csv", str(prefix), "--csv-full-history"],
           env={"BENCH_USERS": "2", "BENCH_STEP_USERS": "1", "BENCH_STEP_S": "3",
                "BENCH_RUN_S": "7"})
    history = rows(str(prefix) + "_stats_history.csv")
    users = [int(row["User Count"]) for row in history if row["User Count"]]
    assert max(users) == 2 and 1 in users  # one step of one user, then the top of two


def test_the_web_ui_offers_users_spawn_rate_and_run_time_from_locust_conf(system):
    port = free_port()
    process = subprocess.Popen(LOCUST + ["--web-host", "127.0.0.1", "--web-port", str(port)],
                               cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        page = wait_for(lambda: _page("http://127.0.0.1:{}/".format(port)), 60,
                        interval_s=0.5, what="Locust's web UI")
    finally:
        process.terminate()
        process.wait(timeout=30)
    arguments = json.loads(re.search(r"templateArgs = (\{.*?\});?\s*$", page, re.M).group(1))
    assert arguments["available_shape_classes"] == ["Default"]  # no shape hides the fields
    assert (arguments["num_users"], arguments["spawn_rate"], arguments["run_time"]) == (
        20, 5, 120)
    assert arguments["host"] == "http://127.0.0.1:8000"
    assert arguments["extra_options"]["client_ips"]["default_value"] == "per-user"


def _page(url):
    try:
        response = requests.get(url, timeout=2)
    except requests.RequestException:
        return None
    return response.text if response.status_code == 200 else None
