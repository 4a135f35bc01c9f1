"""Turns Locust's CSVs into the benchmark's figures and ratios (pure: files in, dicts out).

Locust's "Aggregated" row counts every event fired at it, and the workload
fires one of type "TX" per decided transfer (loadtests/locustfile.py), so the
HTTP figures here are computed from the HTTP rows alone: request counts are
summed, and the overall percentiles come from merging each row's percentile
curve weighted by its request count (exact when there is one row, otherwise
as close as Locust's eleven percentile points allow).

Throughput is given two ways: over the whole run (Locust's own Requests/s,
which includes the ramp-up) and at full load (the cumulative counts of the
stats history, from the first to the last sample taken at the top user count),
which is what the baselines — run at full concurrency throughout — compare with.
"""
import csv
import re
from pathlib import Path

PERCENTILE_COLUMNS = (("50%", 0.50), ("66%", 0.66), ("75%", 0.75), ("80%", 0.80),
                      ("90%", 0.90), ("95%", 0.95), ("98%", 0.98), ("99%", 0.99),
                      ("99.9%", 0.999), ("99.99%", 0.9999), ("100%", 1.0))
REPORTED_PERCENTILES = (("p50", 0.50), ("p95", 0.95), ("p99", 0.99))
EVENT_TYPE = "TX"  # rows the workload fires itself, not HTTP requests
AGGREGATED = "Aggregated"
COMPLETED_TRANSFERS = "transfer completed"
FAILED_TRANSFERS_PREFIX = "transfer failed"
TRANSFER_REQUEST = ("POST", "/v1/transfers")


def read_csv(path):
    """The rows of a CSV as dicts; [] if the file does not exist (Locust did not write it)."""
    path = Path(path)
    if not path.exists():
        return []
    with path.open(newline="", encoding="utf-8") as stream:
        return list(csv.DictReader(stream))


def _number(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _count(row, column="Request Count"):
    return int(_number(row.get(column)) or 0)


# --- percentiles ---------------------------------------------------------------------


def _curve(row, lowest_column):
    """A row's response-time distribution as (ms, cumulative fraction) points, or None."""
    points = [(_number(row.get(lowest_column)) or 0.0, 0.0)]
    for column, fraction in PERCENTILE_COLUMNS:
        value = _number(row.get(column))
        if value is None:
            return None  # "N/A": no requests in this row
        points.append((max(value, points[-1][0]), fraction))
    return points


def _fraction_below(points, ms, left=False):
    """The piecewise-linear cumulative fraction of one curve at ``ms``; with ``left``, its
    limit from below (the two differ where several percentiles share one value)."""
    if ms < points[0][0] or (left and ms == points[0][0]):
        return 0.0
    if ms > points[-1][0] or (not left and ms == points[-1][0]):
        return 1.0
    if left:
        index = max(i for i, (x, _) in enumerate(points) if x < ms)
    else:
        index = max(i for i, (x, _) in enumerate(points) if x <= ms)
    (x0, f0), (x1, f1) = points[index], points[index + 1]
    return f0 + (f1 - f0) * (ms - x0) / (x1 - x0)


def merged_percentiles(weighted_curves, fractions):
    """Percentiles of a mixture of curves: {fraction: ms}, each ms rounded to 0.1.

    The mixture is linear between the curves' points and may jump at a point; a
    fraction inside a jump is that point's value."""
    weighted_curves = [(w, c) for w, c in weighted_curves if w > 0 and c]
    if not weighted_curves:
        return {fraction: None for fraction in fractions}
    total_weight = sum(w for w, _ in weighted_curves)

    def mixture(ms, left):
        return sum(w * _fraction_below(c, ms, left) for w, c in weighted_curves) / total_weight

    breakpoints = sorted({x for _, curve in weighted_curves for x, _ in curve})
    answers = {}
    for fraction in fractions:
        previous_x, previous_f = breakpoints[0], 0.0
        for x in breakpoints:
            below, at = mixture(x, left=True), mixture(x, left=False)
            if fraction <= below + 1e-12 and x > previous_x:
                answers[fraction] = round(previous_x + (x - previous_x) * (
                    fraction - previous_f) / (below - previous_f), 1)
                break
            if fraction <= at + 1e-12:
                answers[fraction] = round(x, 1)
                break
            previous_x, previous_f = x, at
        else:
            answers[fraction] = round(breakpoints[-1], 1)
    return answers


def latency_ms(rows, weight_column="Request Count", lowest_column="Min Response Time"):
    """{"p50", "p95", "p99"} in ms over ``rows`` (merged, weighted by ``weight_column``)."""
    curves = [(_number(row.get(weight_column)) or 0.0, _curve(row, lowest_column))
              for row in rows]
    merged = merged_percentiles(curves, [fraction for _, fraction in REPORTED_PERCENTILES])
    return {label: merged[fraction] for label, fraction in REPORTED_PERCENTILES}


# --- one Locust run --------------------------------------------------------------------


def http_rows(stats_rows):
    return [row for row in stats_rows
            if row["Name"] != AGGREGATED and row["Type"] != EVENT_TYPE]


def find_row(stats_rows, request_type, name):
    return next((row for row in stats_rows
                 if row["Type"] == request_type and row["Name"] == name), None)


def run_duration_s(stats_rows):
    """Locust's own denominator: Aggregated count ÷ Aggregated Requests/s."""
    aggregated = find_row(stats_rows, "", AGGREGATED) or next(
        (row for row in stats_rows if row["Name"] == AGGREGATED), None)
    if not aggregated or not _number(aggregated.get("Requests/s")):
        return None
    return _count(aggregated) / float(aggregated["Requests/s"])


def error_key(error_text):
    """A failure's label: the workload's own message ('HTTP 429 rate_limited', 'connection
    error: ConnectionResetError'), 'HTTP <status>' for Locust's HTTP errors, else the type."""
    text = error_text.strip()
    wrapped = re.fullmatch(r"CatchResponseError\((['\"])(?P<message>.*)\1\)", text)
    if wrapped:
        return wrapped.group("message")
    status = re.search(r"\b(?P<status>[1-5]\d\d) (?:Client|Server) Error", text)
    if status:
        return "HTTP " + status.group("status")
    return text.split("(", 1)[0].strip() or "unknown"


def error_counts(failure_rows):
    """Failures by label and by HTTP status (or exception type)."""
    by_label, by_status = {}, {}
    for row in failure_rows:
        label = error_key(row.get("Error", ""))
        occurrences = _count(row, "Occurrences")
        by_label[label] = by_label.get(label, 0) + occurrences
        status = re.match(r"HTTP (\d{3})", label)
        kind = status.group(1) if status else label
        by_status[kind] = by_status.get(kind, 0) + occurrences
    return {"total": sum(by_label.values()),
            "by_status": dict(sorted(by_status.items())),
            "by_type": dict(sorted(by_label.items(), key=lambda item: -item[1]))}


def _per_s(count, duration_s):
    return round(count / duration_s, 2) if duration_s else None


def history_samples(history_rows):
    """One sample per write of the stats history: (timestamp, users, HTTP requests so far,
    completed transfers so far). Locust writes each name's row, then the Aggregated row."""
    samples, events, completed = [], 0, 0
    for row in history_rows:
        if row["Name"] == AGGREGATED:
            samples.append((int(_number(row["Timestamp"])), _count(row, "User Count"),
                            _count(row, "Total Request Count") - events, completed))
            events, completed = 0, 0
        elif row["Type"] == EVENT_TYPE:
            events += _count(row, "Total Request Count")
            if row["Name"] == COMPLETED_TRANSFERS:
                completed += _count(row, "Total Request Count")
    return samples


def full_load_rates(history_rows):
    """Requests/s and completed transfers/s while the top user count ran, from cumulative counts.

    None when no two samples at the top user count are at least a second apart."""
    samples = history_samples(history_rows)
    if not samples:
        return None
    top_users = max(users for _, users, _, _ in samples)
    at_top = [sample for sample in samples if sample[1] == top_users]
    (first_s, _, first_http, first_completed) = at_top[0]
    (last_s, _, last_http, last_completed) = at_top[-1]
    seconds = last_s - first_s
    if seconds < 1:
        return None
    return {"users": top_users, "seconds": seconds,
            "requests_per_s": _per_s(last_http - first_http, seconds),
            "completed_transfers_per_s": _per_s(last_completed - first_completed, seconds)}


def history_series(history_rows):
    """The run over time for the chart: per sample, seconds since the first, users, HTTP
    requests/s, completed transfers/s and the p50/p95 of HTTP requests (Locust's current
    window, about the last 10 s)."""
    series, rows_of_sample, started_s = [], [], None
    for row in history_rows:
        if row["Name"] != AGGREGATED:
            rows_of_sample.append(row)
            continue
        timestamp_s = int(_number(row["Timestamp"]))
        started_s = timestamp_s if started_s is None else started_s
        requests = http_rows(rows_of_sample)
        completed = find_row(rows_of_sample, EVENT_TYPE, COMPLETED_TRANSFERS)
        latency = latency_ms(requests, weight_column="Requests/s",
                             lowest_column="Total Min Response Time")
        series.append({
            "elapsed_s": timestamp_s - started_s,
            "users": _count(row, "User Count"),
            "requests_per_s": round(sum(_number(r["Requests/s"]) or 0 for r in requests), 2),
            "completed_transfers_per_s": _number(completed["Requests/s"]) if completed else 0.0,
            "p50_ms": latency["p50"],
            "p95_ms": latency["p95"],
        })
        rows_of_sample = []
    return series


def locust_figures(stats_rows, failure_rows=(), history_rows=()):
    """The figures of one Locust run from its _stats, _failures and _stats_history CSVs."""
    duration_s = run_duration_s(stats_rows)
    requests = http_rows(stats_rows)
    request_count = sum(_count(row) for row in requests)
    completed = find_row(stats_rows, EVENT_TYPE, COMPLETED_TRANSFERS)
    failed_transfers = {row["Name"].split(":", 1)[-1].strip(): _count(row)
                        for row in stats_rows if row["Type"] == EVENT_TYPE
                        and row["Name"].startswith(FAILED_TRANSFERS_PREFIX)}
    transfer = find_row(stats_rows, *TRANSFER_REQUEST)
    figures = {
        "duration_s": round(duration_s, 1) if duration_s else None,
        "requests": request_count,
        "failures": sum(_count(row, "Failure Count") for row in requests),
        "requests_per_s": _per_s(request_count, duration_s),
        "latency_ms": latency_ms(requests),
        "transfers": {
            "requests": _count(transfer) if transfer else 0,
            "latency_ms": latency_ms([transfer] if transfer else []),
            "completed": _count(completed) if completed else 0,
            "completed_per_s": _per_s(_count(completed), duration_s) if completed else 0.0,
            # From the POST until the decision is known (a 202 polled to the end).
            "completed_latency_ms": latency_ms([completed] if completed else []),
            "failed_by_reason": failed_transfers,
        },
        "errors": error_counts(failure_rows),
        "full_load": full_load_rates(list(history_rows)),
    }
    return figures


def read_locust_run(csv_prefix):
    """locust_figures() of the CSVs Locust wrote with ``--csv csv_prefix``."""
    prefix = str(csv_prefix)
    return locust_figures(read_csv(prefix + "_stats.csv"), read_csv(prefix + "_failures.csv"),
                          read_csv(prefix + "_stats_history.csv"))


# --- the comparison ----------------------------------------------------------------------


def _ratio(numerator, denominator):
    if numerator is None or not denominator:
        return None
    return round(numerator / denominator, 4)


def _at_full_load(figures, key):
    """The full-load rate when the history had one, else the whole-run rate."""
    full_load = figures.get("full_load") or {}
    if full_load.get(key) is not None:
        return full_load[key]
    return (figures["transfers"]["completed_per_s"] if key == "completed_transfers_per_s"
            else figures["requests_per_s"])


def ratios(system, health, raw_database):
    """The system against its two baselines (None where a figure is missing or zero)."""
    return {
        "completed_transfers_per_s_vs_raw_postgres": _ratio(
            _at_full_load(system, "completed_transfers_per_s"),
            raw_database.get("transfers_per_s") if raw_database else None),
        "requests_per_s_vs_health": _ratio(
            _at_full_load(system, "requests_per_s"),
            _at_full_load(health, "requests_per_s") if health else None),
        "transfer_p50_vs_health_p50": _ratio(
            system["transfers"]["latency_ms"]["p50"],
            health["latency_ms"]["p50"] if health else None),
    }
