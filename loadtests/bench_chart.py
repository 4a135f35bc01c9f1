"""Draws the benchmark's chart.png: throughput and latency over time, with the user count.

Both panels share the time axis and carry the user count on a second axis, so
each step of the load reads directly as "this many users gave this throughput
at this latency". The Agg backend draws to a file with no display.
"""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402


def _values(series, key):
    """A series' values with the gaps (None: no requests in the window) as NaN, drawn as gaps."""
    return [float("nan") if point[key] is None else point[key] for point in series]


def _with_users(axis, series, elapsed):
    users_axis = axis.twinx()
    users_axis.step(elapsed, [point["users"] for point in series], where="post",
                    color="grey", linestyle=":", label="users")
    users_axis.set_ylabel("users")
    users_axis.set_ylim(bottom=0)
    return users_axis


def draw_chart(series, path, title):
    """Write the chart of ``series`` (bench_summary.history_series) to ``path``."""
    elapsed = [point["elapsed_s"] for point in series]
    figure, (throughput, latency) = plt.subplots(2, 1, sharex=True, figsize=(10, 7))
    figure.suptitle(title)

    throughput.plot(elapsed, _values(series, "requests_per_s"),
                    label="HTTP requests/s")
    throughput.plot(elapsed, _values(series, "completed_transfers_per_s"),
                    label="completed transfers/s")
    throughput.set_ylabel("per second")
    throughput.set_ylim(bottom=0)
    throughput.grid(alpha=0.3)
    users_axis = _with_users(throughput, series, elapsed)
    _legend(throughput, users_axis)

    latency.plot(elapsed, _values(series, "p50_ms"), label="p50, all requests")
    latency.plot(elapsed, _values(series, "p95_ms"), label="p95, all requests")
    latency.set_ylabel("latency (ms)")
    latency.set_xlabel("seconds since start")
    latency.set_ylim(bottom=0)
    latency.grid(alpha=0.3)
    users_axis = _with_users(latency, series, elapsed)
    _legend(latency, users_axis)

    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _legend(axis, users_axis):
    lines, labels = axis.get_legend_handles_labels()
    more_lines, more_labels = users_axis.get_legend_handles_labels()
    axis.legend(lines + more_lines, labels + more_labels, loc="upper left", fontsize="small")
