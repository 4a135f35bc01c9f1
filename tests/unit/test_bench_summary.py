"""The benchmark's pure parts: Locust CSVs into figures and ratios, and the raw PostgreSQL loop.

The CSVs are small fixtures in Locust 2.47's own columns; the loop runs for a
second or so against the tests' PostgreSQL database in a scratch schema. No
assertion is about speed: only about what the figures say and that money moved
and was conserved.
"""
import csv

import psycopg2
import pytest

from loadtests import baseline_db
from loadtests.bench_summary import (PERCENTILE_COLUMNS, error_counts, history_series,
                                     latency_ms, locust_figures, merged_percentiles,
                                     read_csv, read_locust_run, ratios)

PERCENTILES = [column for column, _ in PERCENTILE_COLUMNS]
STATS_COLUMNS = ["Type", "Name", "Request Count", "Failure Count", "Median Response Time",
                 "Average Response Time", "Min Response Time", "Max Response Time",
                 "Average Content Size", "Requests/s", "Failures/s", *PERCENTILES]
HISTORY_COLUMNS = ["Timestamp", "User Count", "Type", "Name", "Requests/s", "Failures/s",
                   *PERCENTILES, "Total Request Count", "Total Failure Count",
                   "Total Median Response Time", "Total Average Response Time",
                   "Total Min Response Time", "Total Max Response Time",
                   "Total Average Content Size"]
FAILURE_COLUMNS = ["Method", "Name", "Error", "Occurrences", "First Seen", "Last Seen"]


def stats_row(kind, name, count, rps, percentiles, failures=0, minimum=None):
    """A row of locust_stats.csv; ``percentiles`` are the 11 values 50% … 100%."""
    values = [kind, name, count, failures, percentiles[0], percentiles[0],
              percentiles[0] if minimum is None else minimum, percentiles[-1], 100, rps, 0,
              *percentiles]
    return dict(zip(STATS_COLUMNS, [str(value) for value in values]))


def history_row(timestamp, users, kind, name, rps, total, percentiles=None, minimum=1):
    percentiles = percentiles or [10] * len(PERCENTILES)
    values = [timestamp, users, kind, name, rps, 0, *percentiles, total, 0, 10, 10, minimum,
              100, 100]
    return dict(zip(HISTORY_COLUMNS, [str(value) for value in values]))


def flat(ms):
    return [ms] * len(PERCENTILES)


def write_csv(path, columns, rows):
    with path.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.DictWriter(stream, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


# A run of 10 s: 200 reads, 100 transfer POSTs (90 completed, 10 refused), and the
# Aggregated row as Locust writes it, counting the 100 TX events too.
READS = stats_row("GET", "/v1/accounts/[id]", 200, 20.0, flat(10), failures=5)
TRANSFERS = stats_row("POST", "/v1/transfers", 100, 10.0,
                      [50, 60, 70, 80, 90, 100, 110, 120, 130, 140, 150], minimum=40)
COMPLETED = stats_row("TX", "transfer completed", 90, 9.0, flat(55))
REFUSED = stats_row("TX", "transfer failed: insufficient_funds", 10, 1.0, flat(45))
AGGREGATED = stats_row("", "Aggregated", 400, 40.0, flat(30), failures=5)
STATS = [READS, TRANSFERS, COMPLETED, REFUSED, AGGREGATED]


def test_http_figures_leave_out_the_workloads_own_events():
    figures = locust_figures(STATS)

    assert figures["duration_s"] == 10.0
    assert figures["requests"] == 300
    assert figures["failures"] == 5
    assert figures["requests_per_s"] == 30.0


def test_completed_transfers_per_second_and_refusals_by_reason():
    transfers = locust_figures(STATS)["transfers"]

    assert transfers["requests"] == 100
    assert transfers["completed"] == 90
    assert transfers["completed_per_s"] == 9.0
    assert transfers["failed_by_reason"] == {"insufficient_funds": 10}
    assert transfers["latency_ms"] == {"p50": 50.0, "p95": 100.0, "p99": 120.0}
    assert transfers["completed_latency_ms"] == {"p50": 55.0, "p95": 55.0, "p99": 55.0}


def test_one_rows_percentiles_are_its_own():
    assert latency_ms([TRANSFERS]) == {"p50": 50.0, "p95": 100.0, "p99": 120.0}


def test_merging_identical_rows_changes_nothing():
    assert latency_ms([TRANSFERS, dict(TRANSFERS)]) == latency_ms([TRANSFERS])


def test_merged_percentiles_follow_the_weights():
    fast = [(10.0, 0.0)] + [(10.0, fraction) for _, fraction in PERCENTILE_COLUMNS]
    slow = [(100.0, 0.0)] + [(100.0, fraction) for _, fraction in PERCENTILE_COLUMNS]

    mostly_fast = merged_percentiles([(3, fast), (1, slow)], [0.5, 0.74, 0.95])
    assert mostly_fast == {0.5: 10.0, 0.74: 10.0, 0.95: 100.0}
    even = merged_percentiles([(1, fast), (1, slow)], [0.25, 0.75])
    assert even == {0.25: 10.0, 0.75: 100.0}


def test_overall_latency_lies_between_the_rows():
    overall = locust_figures(STATS)["latency_ms"]

    # Two thirds of the requests take 10 ms, the transfers 40–150 ms.
    assert overall["p50"] == 10.0
    assert 40.0 <= overall["p95"] <= 150.0
    assert overall["p95"] <= overall["p99"] <= 150.0


def test_no_requests_no_latency():
    empty = stats_row("GET", "/never", 0, 0.0, ["N/A"] * len(PERCENTILES))

    assert latency_ms([empty]) == {"p50": None, "p95": None, "p99": None}


def test_errors_are_counted_by_status_and_by_label():
    failures = [
        {"Method": "POST", "Name": "/v1/transfers", "Occurrences": "5",
         "Error": "CatchResponseError('HTTP 429 rate_limited')"},
        {"Method": "GET", "Name": "/v1/accounts/[id]", "Occurrences": "2",
         "Error": "CatchResponseError('HTTP 429 rate_limited')"},
        {"Method": "POST", "Name": "/v1/deposits", "Occurrences": "3",
         "Error": "CatchResponseError('HTTP 503 service_unavailable')"},
        {"Method": "GET", "Name": "/health", "Occurrences": "1",
         "Error": "HTTPError('500 Server Error: Internal Server Error for url: /health')"},
        {"Method": "GET", "Name": "/health", "Occurrences": "4",
         "Error": "ConnectionResetError(104, 'Connection reset by peer')"},
    ]

    counts = error_counts(failures)

    assert counts["total"] == 15
    assert counts["by_status"] == {"429": 7, "503": 3, "500": 1, "ConnectionResetError": 4}
    assert counts["by_type"] == {"HTTP 429 rate_limited": 7, "ConnectionResetError": 4,
                                 "HTTP 503 service_unavailable": 3, "HTTP 500": 1}


def history():
    """Two samples at 5 users, then three at 10 users, then the stop at 0 users."""
    rows = []
    totals = [(100, 10, 4), (160, 16, 6), (260, 30, 10), (360, 44, 14), (460, 58, 18),
              (470, 60, 18)]
    for second, (aggregated, completed, refused) in enumerate(totals):
        users = 5 if second < 2 else 10 if second < 5 else 0
        rows += [
            history_row(1000 + second, users, "GET", "/v1/accounts/[id]", 40, 0,
                        percentiles=flat(10)),
            history_row(1000 + second, users, "POST", "/v1/transfers", 20, 0,
                        percentiles=flat(80)),
            history_row(1000 + second, users, "TX", "transfer completed", 14, completed),
            history_row(1000 + second, users, "TX", "transfer failed: insufficient_funds", 4,
                        refused),
            history_row(1000 + second, users, "", "Aggregated", 78, aggregated),
        ]
    return rows


def test_full_load_rates_come_from_the_cumulative_counts_at_the_top_step():
    full_load = locust_figures(STATS, history_rows=history())["full_load"]

    # At 10 users from t=2 to t=4: HTTP requests (Aggregated less the TX events)
    # 220 → 384, completed transfers 30 → 58.
    assert full_load == {"users": 10, "seconds": 2, "requests_per_s": 82.0,
                         "completed_transfers_per_s": 14.0}


def test_history_series_for_the_chart():
    series = history_series(history())

    assert [point["elapsed_s"] for point in series] == [0, 1, 2, 3, 4, 5]
    assert [point["users"] for point in series] == [5, 5, 10, 10, 10, 0]
    assert series[0]["requests_per_s"] == 60.0
    assert series[0]["completed_transfers_per_s"] == 14.0
    # Weighted 40:20 between 10 ms reads and 80 ms transfers.
    assert series[0]["p50_ms"] == 10.0
    assert series[0]["p95_ms"] == 80.0


def test_ratios_against_the_baselines():
    system = locust_figures(STATS, history_rows=history())
    health = locust_figures([stats_row("GET", "/health", 8200, 820.0, flat(2)),
                             stats_row("", "Aggregated", 8200, 820.0, flat(2))])
    raw_postgres = {"transfers_per_s": 1400.0}

    assert ratios(system, health, raw_postgres) == {
        "completed_transfers_per_s_vs_raw_postgres": 0.01,  # 14 ÷ 1400, at full load
        "requests_per_s_vs_health": 0.1,  # 82 ÷ 820
        "transfer_p50_vs_health_p50": 25.0,  # 50 ms ÷ 2 ms
    }
    assert ratios(system, None, None) == {
        "completed_transfers_per_s_vs_raw_postgres": None,
        "requests_per_s_vs_health": None,
        "transfer_p50_vs_health_p50": None,
    }


def test_a_run_is_read_from_the_files_locust_writes(tmp_path):
    write_csv(tmp_path / "locust_stats.csv", STATS_COLUMNS, STATS)
    write_csv(tmp_path / "locust_stats_history.csv", HISTORY_COLUMNS, history())
    write_csv(tmp_path / "locust_failures.csv", FAILURE_COLUMNS, [
        {"Method": "GET", "Name": "/v1/accounts/[id]", "Occurrences": "5", "First Seen": "",
         "Last Seen": "", "Error": "CatchResponseError('HTTP 429 rate_limited')"}])

    figures = read_locust_run(tmp_path / "locust")

    assert figures["requests"] == 300
    assert figures["errors"]["by_status"] == {"429": 5}
    assert figures["full_load"]["users"] == 10
    assert read_csv(tmp_path / "absent.csv") == []


# --- the raw PostgreSQL baseline ---------------------------------------------------------------

SCRATCH = "bench_baseline_unit"
ACCOUNTS = 6


@pytest.fixture
def scratch(database_url):
    baseline_db.create_scratch(database_url, SCRATCH, ACCOUNTS)
    yield database_url
    baseline_db.drop_scratch(database_url, SCRATCH)


def test_the_raw_loop_moves_money_and_conserves_it(scratch):
    result = baseline_db.transfer_loop(scratch, SCRATCH, threads=2, seconds=1.5,
                                       accounts=ACCOUNTS, seed=7)
    books = baseline_db.books(scratch, SCRATCH)

    assert result.errors == []
    assert result.committed > 0
    assert len(result.latencies_ms) == result.committed
    assert books["entries"] == 2 * result.committed
    assert books["entries_sum_minor"] == 0
    assert books["total_minor"] == ACCOUNTS * baseline_db.OPENING_BALANCE_MINOR
    assert books["lowest_minor"] >= 0
    assert books["disagreeing_accounts"] == []
    figures = result.figures()
    assert figures["transfers_committed"] == result.committed
    assert figures["transfers_per_s"] > 0
    assert figures["latency_ms"]["p50"] <= figures["latency_ms"]["p99"]


def test_an_overdraft_is_refused_and_moves_nothing(scratch):
    connection = baseline_db.connect(scratch)
    try:
        refused = baseline_db.transfer_once(connection, SCRATCH, 1, 2,
                                            baseline_db.OPENING_BALANCE_MINOR + 1)
        moved = baseline_db.transfer_once(connection, SCRATCH, 1, 2, 500)
    finally:
        connection.close()
    books = baseline_db.books(scratch, SCRATCH)

    assert (refused, moved) == (False, True)
    assert books["entries"] == 2
    assert books["disagreeing_accounts"] == []
    assert books["total_minor"] == ACCOUNTS * baseline_db.OPENING_BALANCE_MINOR


def test_the_baseline_drops_its_scratch_schema(database_url):
    figures = baseline_db.run_baseline(database_url, threads=1, seconds=0.3,
                                       schema=SCRATCH + "_dropped")

    assert figures["transfers_committed"] > 0
    connection = psycopg2.connect(database_url)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM information_schema.schemata WHERE schema_name = %s",
                           (SCRATCH + "_dropped",))
            assert cursor.fetchone() is None
    finally:
        connection.close()
