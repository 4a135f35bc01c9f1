"""`make bench`'s verdict (loadtests/bench_verdict.py): the figures of a run against the
thresholds asked for, on figures recorded from a real run (a short smoke run of
`make bench` on the two-core development machine, summary.json trimmed to what the
verdict reads)."""
import pytest

from loadtests import bench
from loadtests.bench_verdict import MISSED, PASSED, THRESHOLDS, judge

RECORDED = {"transfers_only": {"runs": {
    "transfers": {"completed_transfers_per_s": 49.1, "vs_raw_postgres": 0.052,
                  "decision_latency_ms": {"p50": 73.0, "p95": 130.0, "p99": 150.0}},
    "half": {"completed_transfers_per_s": 16.8, "vs_raw_postgres": 0.018,
             "decision_latency_ms": {"p50": 170.0, "p95": 260.0, "p99": 310.0}},
    "batch": {"completed_transfers_per_s": 218.7, "vs_raw_postgres": 0.232,
              "decision_latency_ms": {"p50": 230.0, "p95": 310.0, "p99": 330.0}},
}}}
SINGLE, BATCH, P99 = THRESHOLDS


def test_no_thresholds_no_verdict_and_exit_0():
    assert judge(RECORDED, []) == (PASSED, None, [])


def test_every_threshold_met_passes_and_names_each_figure():
    status, line, checks = judge(RECORDED, [(SINGLE, 0.05), (BATCH, 0.2), (P99, 310)])
    assert status == PASSED == 0
    assert line == ("Verdict: PASS, every threshold met: single transfers ÷ raw PostgreSQL "
                    "0.052 ≥ 0.05; batch transfers ÷ raw PostgreSQL 0.232 ≥ 0.2; decision "
                    "p99 ms at half load 310 ≤ 310")
    assert [check.passed for check in checks] == [True, True, True]


def test_the_mission_targets_fail_this_run_and_say_by_how_much():
    status, line, _ = judge(RECORDED, [(SINGLE, 0.1), (BATCH, 1.0), (P99, 100)])
    assert status == MISSED == 3
    assert line == ("Verdict: FAIL, 3 of 3 thresholds missed: single transfers ÷ raw "
                    "PostgreSQL 0.052 < 0.1; batch transfers ÷ raw PostgreSQL 0.232 < 1; "
                    "decision p99 ms at half load 310 > 100")


def test_one_threshold_missed_fails_and_lists_the_ones_met():
    status, line, checks = judge(RECORDED, [(SINGLE, 0.05), (P99, 300)])
    assert status == MISSED
    assert line == ("Verdict: FAIL, 1 of 2 thresholds missed: decision p99 ms at half load "
                    "310 > 300 (met: single transfers ÷ raw PostgreSQL 0.052 ≥ 0.05)")
    assert [check.as_dict() for check in checks] == [
        {"option": "--min-single-ratio", "figure": 0.052, "limit": 0.05, "passed": True},
        {"option": "--max-p99-ms", "figure": 310.0, "limit": 300, "passed": False}]


def test_a_figure_the_run_did_not_measure_misses_its_threshold():
    without_batch = {"transfers_only": {"runs": {
        name: figures for name, figures in RECORDED["transfers_only"]["runs"].items()
        if name != "batch"}}}
    status, line, _ = judge(without_batch, [(BATCH, 0.0)])
    assert status == MISSED
    assert "batch transfers ÷ raw PostgreSQL: not measured (limit 0)" in line
    no_ratio = {"transfers_only": {"runs": {"transfers": {"vs_raw_postgres": None}}}}
    assert judge(no_ratio, [(SINGLE, 0.0)])[0] == MISSED


def test_thresholds_come_from_options_or_the_environment(monkeypatch):
    monkeypatch.setenv("BENCH_MAX_P99_MS", "100")
    arguments = bench.parse_arguments([
        "--url", "http://127.0.0.1:1", "--database-url", "postgresql://nowhere/none",
        "--min-single-ratio", "0.1"])
    assert (arguments.min_single_ratio, arguments.min_batch_ratio,
            arguments.max_p99_ms) == (0.1, None, 100.0)


@pytest.mark.parametrize("options, error", [
    (["--scenarios", "mix,transfers", "--max-p99-ms", "100"],
     "--max-p99-ms needs the half run in --scenarios"),
    (["--scenarios", "transfers", "--skip-baselines", "--min-single-ratio", "0.1"],
     "--min-single-ratio is a ratio to the raw PostgreSQL baseline: drop --skip-baselines"),
])
def test_a_threshold_the_run_cannot_measure_is_refused_before_it_starts(options, error,
                                                                        capsys):
    with pytest.raises(SystemExit) as exited:
        bench.parse_arguments(["--url", "http://127.0.0.1:1", "--database-url",
                               "postgresql://nowhere/none"] + options)
    assert exited.value.code == 2
    assert error in capsys.readouterr().err
