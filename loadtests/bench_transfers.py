"""The transfers-only part of `make bench`: its options, its runs (loadtests/bench_scenarios.py)
in order, how long the asynchronous side takes to catch up after the saturating run, and
its table in the report.
"""
import json

from loadtests import bench_identities, bench_scenarios
from loadtests.bench_costs import Probe
from shared import work_counters

SCENARIOS = ("transfers", "half", "batch", "validator-down")
DEPOSIT_MINOR = 100_000_000  # the validators' largest single amount by default
STOPPED_VALIDATOR = "validator_3"
SETTLE_LIMIT_S = 600


def add_arguments(parser, environment):
    group = parser.add_argument_group("transfers-only scenarios")
    group.add_argument("--scenarios", default=environment(
        "BENCH_SCENARIOS", ",".join(("mix",) + SCENARIOS)),
        help="which runs, in order: mix (the workload of loadtests/locustfile.py), "
        "transfers, half, batch, validator-down (BENCH_SCENARIOS; default %(default)s)")
    group.add_argument("--transfer-users", type=int,
                       default=environment("BENCH_TRANSFER_USERS", 64, int),
                       help="concurrent payers of the transfers runs "
                       "(BENCH_TRANSFER_USERS; default %(default)s)")
    group.add_argument("--transfer-seconds", type=float,
                       default=environment("BENCH_TRANSFER_S", 60, float),
                       help="length of the saturating transfers run; the others take half "
                       "(BENCH_TRANSFER_S; default %(default)s)")
    group.add_argument("--batch-users", type=int,
                       default=environment("BENCH_BATCH_USERS", 4, int),
                       help="concurrent payers of the batch run (BENCH_BATCH_USERS; "
                       "default %(default)s)")
    group.add_argument("--batch-size", type=int,
                       default=environment("BENCH_BATCH_SIZE", 1000, int),
                       help="transfers per POST /v1/transfers/batch (BENCH_BATCH_SIZE; "
                       "default %(default)s)")
    group.add_argument("--drain-limit-seconds", type=float,
                       default=environment("BENCH_DRAIN_LIMIT_S", 120, float),
                       help="how long to wait for the outboxes and deliveries to empty "
                       "after the saturating run (BENCH_DRAIN_LIMIT_S; default %(default)s)")


def chosen(arguments):
    names = [name.strip() for name in arguments.scenarios.split(",") if name.strip()]
    unknown = set(names) - set(("mix",) + SCENARIOS)
    if unknown:
        raise SystemExit("unknown scenarios: {}".format(", ".join(sorted(unknown))))
    return names


def phases(arguments):
    """Progress phases these runs take: the settling, the payers, each run, the drain."""
    names = [name for name in chosen(arguments) if name != "mix"]
    return (2 + len(names) + ("transfers" in names)) if names else 0


def run_all(arguments, folder, progress, config, control):
    """``{"runs": {name: figures}, "drain_s": seconds or None}`` of the chosen scenarios."""
    names = [name for name in chosen(arguments) if name != "mix"]
    if not names:
        return {}
    probe = Probe(arguments.database_url, config)
    # A system just started may be busy with earlier work (the embedded Kafka broker keeps
    # nothing across a restart, so the relay republishes the whole outbox): wait for it,
    # or its work would count against the runs.
    settled_s = progress.run("settle: the backlog of earlier work", None,
                             lambda: probe.wait_for_empty_backlog(SETTLE_LIMIT_S))
    if settled_s is None:
        progress.say("Warning: the backlog was not empty after {} s; the figures include "
                     "its work.".format(SETTLE_LIMIT_S))
    payers_path = folder / "payers.json"
    count = max(arguments.transfer_users, arguments.batch_users)
    payers = progress.run("payers: {} funded users".format(count), count / 4,
                          lambda: bench_identities.make_payers(arguments.url, count,
                                                               DEPOSIT_MINOR))
    payers_path.write_text(json.dumps(payers), encoding="utf-8")
    runs, drain_s, drained = {}, None, False
    short_s = max(10.0, arguments.transfer_seconds / 2)
    for name in names:
        if name == "transfers":
            scenario = bench_scenarios.Scenario(
                "transfers", "single transfers, saturating", arguments.transfer_users,
                arguments.transfer_seconds)
        elif name == "half":
            if "transfers" not in runs:
                raise SystemExit("the half scenario needs the transfers one before it")
            scenario = bench_scenarios.half_of(runs["transfers"], arguments.transfer_users,
                                               short_s)
        elif name == "batch":
            scenario = bench_scenarios.Scenario(
                "batch", "batches of {}".format(arguments.batch_size), arguments.batch_users,
                short_s, batch_size=arguments.batch_size)
        else:
            scenario = bench_scenarios.Scenario(
                "validator-down", "single transfers, {} stopped".format(STOPPED_VALIDATOR),
                arguments.transfer_users, short_s, stopped_validator=STOPPED_VALIDATOR)
        runs[name] = bench_scenarios.run(scenario, arguments, folder, probe, payers_path,
                                         progress, control)
        # The drain is timed once, after the first saturating run.
        if name in ("transfers", "batch") and not drained:
            drained = True
            drain_s = progress.run("drain: outboxes and deliveries", None,
                                   lambda: probe.wait_for_empty_backlog(
                                       arguments.drain_limit_seconds))
    return {"runs": runs, "drain_s": drain_s, "drain_limit_s": arguments.drain_limit_seconds,
            "batch_cost": batch_cost(runs)}


def batch_cost(runs):
    """What a batch of the money desk costs whatever its size, and what each transfer in it
    adds, in CPU ms across the processes: the line through the ``transfers`` and ``half``
    runs' CPU per transfer against their transfers per batch (cpu = fixed / size + own).
    With ``cores_at_half``: the CPU those fixed costs took during the half run. None
    without both runs, or when their batches were the same size."""
    full, half = runs.get("transfers"), runs.get("half")
    if not full or not half:
        return None
    points = [(figures["cpu_ms_per_transfer_total"], (figures.get("step_ms") or {}).get(
        "batch_size")) for figures in (full, half)]
    if any(cpu is None or not size for cpu, size in points):
        return None
    (cpu_full, size_full), (cpu_half, size_half) = points
    if abs(1 / size_half - 1 / size_full) < 1e-9:
        return None
    fixed_ms = (cpu_half - cpu_full) / (1 / size_half - 1 / size_full)
    rate = half["completed_transfers_per_s"] or 0.0
    return {"fixed_ms": round(fixed_ms, 1),
            "per_transfer_ms": round(cpu_full - fixed_ms / size_full, 2),
            "cores_at_half": round(fixed_ms * rate / size_half / 1000, 2)}


def _ratio(value, baseline):
    return None if value is None or not baseline else round(value / baseline, 3)


def with_ratios(results, raw_postgres, health):
    """Each run's completed transfers/s as a share of the raw PostgreSQL loop and of GET
    /health requests/s measured in the same benchmark."""
    raw = raw_postgres and raw_postgres.get("transfers_per_s")
    health_rate = health and ((health.get("full_load") or {}).get("requests_per_s")
                              or health.get("requests_per_s"))
    for figures in results.get("runs", {}).values():
        figures["vs_raw_postgres"] = _ratio(figures["completed_transfers_per_s"], raw)
        figures["vs_health"] = _ratio(figures["completed_transfers_per_s"], health_rate)
    return results


# How the report names the gateway's guard stages (shared/work_counters.py).
GUARD_STAGE_NAMES = {"rate_limits": "rate limits", "idempotency_claim": "key claim",
                     "idempotency_answer": "key answer"}


def _ms(latency):
    return "/".join("-" if latency.get(key) is None else "{:g}".format(latency[key])
                    for key in ("p50", "p95", "p99"))


def steps_lines(runs):
    """Where a transfer's time went in each run, in means: how long a single transfer
    waited in the gateway for its batch to leave, and how long that batch's submit took —
    the consensus steps, and the rest (RPC transit, the work between the steps); and the
    gateway's own time, its guard's stages and the rest."""
    lines = []
    for name, figures in runs.items():
        means = figures.get("step_ms") or {}
        steps = [(step, means.get(step)) for step in work_counters.CONSENSUS_STEPS]
        if all(ms is None for _, ms in steps):
            continue
        parts = ["{} {:g}".format(step, ms) for step, ms in steps if ms is not None]
        request, submit = means.get("request"), means.get("submit")
        if submit is not None:
            gateway = round(request - means["queued"] - submit, 1)
            rest = submit - sum(ms for _, ms in steps if ms is not None)
            lines.append("  {:<15} request {:g} = gateway {:g} + queued {:g} + submit {:g}; "
                         "submit = {} + rest {:g}; {:g} transfers a batch".format(
                             name, request, gateway, means["queued"], submit,
                             " + ".join(parts), round(rest, 1), means["batch_size"]))
            lines.extend(_guard_line(means, gateway))
        else:  # the batch endpoint: no money desk in front of the consensus
            lines.append("  {:<15} {}a batch: {}".format(
                name, "" if request is None else "request {:g}; ".format(request),
                " + ".join(parts)))
    if lines:
        lines[:0] = ["", "Where the time goes (mean ms): a money request in the gateway is its "
                         "own work (HTTP, token, rate limits, idempotency), its wait for a "
                         "batch to leave, and that batch's submit, step by step; then the "
                         "gateway's own work, by its guard's stages:"]
    return lines


def _guard_line(means, gateway_ms):
    """The gateway's own time split into its guard's stages and the rest (HTTP, the
    token, the checks, the answer), with the requests that shared each stage's round
    trips: a stage that shares little costs a round trip per request."""
    stages = [(stage, means.get(stage), means.get(stage + "_per_trip"))
              for stage in work_counters.GUARD_STAGES]
    if any(ms is None for _, ms, _ in stages):
        return []
    parts = ["{} {:g}".format(GUARD_STAGE_NAMES[stage], ms) for stage, ms, _ in stages]
    shared = ["{} {:g}".format(GUARD_STAGE_NAMES[stage], per_trip or 0)
              for stage, _, per_trip in stages]
    rest = round(gateway_ms - sum(ms for _, ms, _ in stages), 1)
    return ["  {:<15} gateway {:g} = {} + rest {:g}; items a round trip: {}".format(
        "", gateway_ms, " + ".join(parts), rest, ", ".join(shared))]


def _by_process(ms_per_transfer):
    """``process ms, …`` of the processes that took a twentieth of a ms or more."""
    return ", ".join("{} {:g}".format(process, ms) for process, ms in ms_per_transfer.items()
                     if ms is not None and ms >= 0.05)


def run_queue_lines(runs):
    """How long each process was ready to run but waited for a CPU, per completed
    transfer, and in all against the CPU the run used: on a machine the load keeps busy,
    every step of a transfer waits this way at each hand-over between processes."""
    lines = []
    for name, figures in runs.items():
        total, cpu = figures.get("run_queue_ms_per_transfer_total"), figures.get(
            "cpu_ms_per_transfer_total")
        if total is None or not cpu:
            continue
        lines.append("  {:<15} all {:g} ({:g} ms for each ms of CPU): {}".format(
            name, total, round(total / cpu, 2),
            _by_process(figures["run_queue_ms_per_transfer"])))
    if lines:
        lines[:0] = ["", "Waiting for a CPU (ready to run, in the kernel's run queue), ms per "
                         "completed transfer, by process:"]
    return lines


def table(results):
    """The printed lines of the transfers-only runs."""
    runs = results.get("runs") or {}
    if not runs:
        return []
    rows = [("run", "completed/s", "÷ raw PG", "÷ /health", "decision ms p50/95/99",
             "CPU ms/transfer", "RPCs/transfer", "commits/transfer")]
    for name, figures in runs.items():
        rows.append((name, figures["completed_transfers_per_s"], figures["vs_raw_postgres"],
                     figures["vs_health"], _ms(figures["decision_latency_ms"]),
                     figures["cpu_ms_per_transfer_total"], figures["rpcs_per_transfer"],
                     figures["commits_per_transfer"]))
    rows = [tuple("-" if cell is None else str(cell) for cell in row) for row in rows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["", "Transfers only (completed transfers counted in the database):"]
    lines += ["  " + "  ".join(cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i])
                               for i, cell in enumerate(row)) for row in rows]
    lines += ["", "CPU ms per completed transfer, by process:"]
    for name, figures in runs.items():
        lines.append("  {:<15} {}".format(name, _by_process(figures["cpu_ms_per_transfer"])))
    lines += run_queue_lines(runs)
    lines += steps_lines(runs)
    cost = results.get("batch_cost")
    if cost:
        lines += ["", "A batch costs {:g} ms of CPU across the processes whatever its size, and "
                      "each transfer in it {:g} ms more (the transfers and half runs); at half "
                      "load the batches' own cost took {:g} cores.".format(
                          cost["fixed_ms"], cost["per_transfer_ms"], cost["cores_at_half"])]
    drain = results.get("drain_s")
    lines += ["", "After the saturating run, outboxes and deliveries empty in: {}".format(
        "{:g} s".format(drain) if drain is not None else
        "more than {:g} s".format(results["drain_limit_s"]))]
    errors = {name: figures["errors"]["total"] for name, figures in runs.items()
              if figures["errors"]["total"]}
    if errors:
        lines.append("  errors: {}".format(", ".join("{} in {}".format(count, name)
                                                     for name, count in errors.items())))
    return lines
