"""`make bench` for real, as short as it goes, against the running test system: the mix
under its step shape and the transfers-only runs write their report (where the time goes
included), and a threshold the run cannot meet makes it fail with a verdict line and exit 3."""
import csv
import json
import subprocess
import sys

from harness.sandbox import ROOT


def test_a_short_bench_reports_and_fails_on_a_threshold_it_misses(system, tmp_path):
    completed = subprocess.run(
        [sys.executable, "-m", "loadtests.bench", "--url", system.url,
         "--database-url", system.database_url, "--reports-dir", str(tmp_path),
         "--scenarios", "mix,transfers,half", "--skip-baselines",
         "--users", "2", "--step-users", "1", "--step-seconds", "2", "--seconds", "5",
         "--transfer-users", "2", "--transfer-seconds", "10", "--drain-limit-seconds", "60",
         "--max-p99-ms", "0.001"],
        cwd=ROOT, env=system.env, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 3, completed.stdout + completed.stderr
    last = completed.stdout.strip().splitlines()[-1]
    assert last.startswith("Verdict: FAIL, 1 of 1 thresholds missed: decision p99 ms at "
                           "half load ") and last.endswith(" > 0.001"), last
    [folder] = tmp_path.glob("bench-*")
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["verdict"]["line"] == last and summary["verdict"]["exit_status"] == 3
    # The mix ran under the step shape: one user, then the top of two.
    assert summary["settings"]["users"] == 2
    with open(folder / "locust_stats_history.csv", newline="", encoding="utf-8") as history:
        users = {row["User Count"] for row in csv.DictReader(history)}
    assert {"1", "2"} <= users
    runs = summary["transfers_only"]["runs"]
    assert runs["transfers"]["completed_transfers_per_s"] > 0
    assert runs["half"]["decision_latency_ms"]["p99"] > 0.001
    # Where the time goes: each step of the single transfers' batches was timed.
    steps = runs["transfers"]["step_ms"]
    assert all(steps[step] > 0 for step in ("prepare", "vote", "decide", "post", "finish")), \
        steps
    assert steps["batch_size"] >= 1 and steps["queued"] >= 0 and steps["submit"] > steps["vote"]
    assert steps["request"] > steps["submit"]
    assert "Where the time goes (mean ms)" in completed.stdout
