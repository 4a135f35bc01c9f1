"""An experiment's report folder: the history of every client operation, the summary,
and a chart of throughput and latency over time with the fault marked."""
import dataclasses
import json

BUCKET_S = 1.0


def write(result, folder):
    """``operations.jsonl``, ``summary.json`` and ``chart.png`` into ``folder``; the summary."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "operations.jsonl", "w") as history:
        for op in result.operations:
            record = dataclasses.asdict(op)
            record["started_s"] = round(op.started_s - result.started, 3)
            transaction = op.transaction or {}
            record["transaction"] = transaction.get("id")
            record["failure_reason"] = transaction.get("failure_reason")
            history.write(json.dumps(record) + "\n")
    summary = result.summary()
    (folder / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    chart(result, folder / "chart.png")
    return summary


def timeline(result):
    """Per second since the start: ``(seconds, completed, failed, unknown, p50_ms)``."""
    buckets = {}
    for op in result.operations:
        finished = op.started_s + op.latency_s - result.started
        bucket = buckets.setdefault(int(finished // BUCKET_S), {"ok": 0, "fail": 0,
                                                                "unknown": 0, "lat": []})
        bucket[op.outcome if op.outcome in bucket else "unknown"] += 1
        if op.outcome == "ok":
            bucket["lat"].append(op.latency_s * 1000)
    last = int((result.stopped - result.started) // BUCKET_S)
    rows = []
    for second in range(last + 1):
        bucket = buckets.get(second, {"ok": 0, "fail": 0, "unknown": 0, "lat": []})
        latencies = sorted(bucket["lat"])
        p50 = latencies[len(latencies) // 2] if latencies else None
        rows.append((second * BUCKET_S, bucket["ok"] / BUCKET_S, bucket["fail"] / BUCKET_S,
                     bucket["unknown"] / BUCKET_S, p50))
    return rows


def chart(result, path):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    rows = timeline(result)
    seconds = [row[0] for row in rows]
    figure, (throughput, latency) = pyplot.subplots(2, 1, figsize=(10, 6), sharex=True)
    throughput.plot(seconds, [row[1] for row in rows], label="completed /s", color="tab:green")
    throughput.plot(seconds, [row[2] for row in rows], label="failed /s", color="tab:orange")
    throughput.plot(seconds, [row[3] for row in rows], label="unknown /s", color="tab:red")
    throughput.set_ylabel("transfers per second")
    latency.plot(seconds, [row[4] for row in rows], label="p50 of completed", color="tab:blue")
    latency.set_ylabel("latency (ms)")
    latency.set_xlabel("seconds since the load started")
    for axis in (throughput, latency):
        axis.axvspan(result.injected - result.started, result.healed - result.started,
                     color="tab:red", alpha=0.15, label="fault held")
        axis.axvline(result.recovered - result.started, color="tab:purple", linestyle="--",
                     label="recovered")
        axis.grid(alpha=0.3)
    throughput.legend(loc="upper right", fontsize="small")
    throughput.set_title("{}: {}".format(result.experiment, result.description))
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    pyplot.close(figure)
