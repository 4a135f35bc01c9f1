"""make bench: the payment system under a Locust step load, against two baselines.

    python -m loadtests.bench [--users 20 --step-users 5 --step-seconds 10 --seconds 60]

Phases, each shown on a progress line:
  1. the system: used as it is if GET /ready answers 200 (its own rate limits
     then apply and 429s are counted), else started with `paysys up`,
     X-Forwarded-For trusted from loopback and the rate limits raised;
  2. baseline /health: Locust hitting only GET /health with the same users and
     spawn rate — the gateway's bare HTTP ceiling on this machine;
  3. baseline raw PostgreSQL: as many threads as users, each committing one
     double-entry transfer after another in a scratch schema (loadtests/baseline_db.py);
  4. the system: the workload of loadtests/locustfile.py under the step shape.

Everything lands in reports/bench-<UTC time>/: the Locust CSVs (locust_*,
health_*) and HTML, summary.json (figures, baselines, ratios, settings,
machine, verdict), chart.png, and the logs. A summary table is printed at the end.
The system is left as it was found (started → stopped again) unless --stop.

With thresholds (--min-single-ratio, --min-batch-ratio, --max-p99-ms;
loadtests/bench_verdict.py) the last line is the verdict, and a run that misses
one exits 3; without, the exit status is 0.
"""
import argparse
import json
import os
import platform
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path

from loadtests import (baseline_db, bench_locust, bench_summary, bench_system, bench_transfers,
                       bench_verdict)
from loadtests.bench_costs import Probe, Snapshot
from loadtests.bench_progress import Progress


def _environment(name, default, kind=str):
    return kind(os.environ.get(name, default))


def parse_arguments(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.bench",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 2)[2] + "\nEach option's default can also be set by the "
        "environment variable named in its help; through make: make bench BENCH_ARGS='--users 50'.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    load = parser.add_argument_group("load")
    load.add_argument("--users", type=int, default=_environment("BENCH_USERS", 20, int),
                      help="simulated users at the top step, and the baselines' concurrency "
                      "(BENCH_USERS; default %(default)s)")
    load.add_argument("--step-users", type=int,
                      default=_environment("BENCH_STEP_USERS", 5, int),
                      help="users added at each step (BENCH_STEP_USERS; default %(default)s)")
    load.add_argument("--step-seconds", type=float,
                      default=_environment("BENCH_STEP_S", 10, float),
                      help="length of each step (BENCH_STEP_S; default %(default)s)")
    load.add_argument("--seconds", type=float, default=_environment("BENCH_RUN_S", 60, float),
                      help="length of the system run (BENCH_RUN_S; default %(default)s)")
    load.add_argument("--think-max-seconds", type=float,
                      default=_environment("BENCH_THINK_MAX_S", 0.5, float),
                      help="each user pauses 0…this between tasks "
                      "(BENCH_THINK_MAX_S; default %(default)s)")
    baselines = parser.add_argument_group("baselines")
    baselines.add_argument("--baseline-seconds", type=float,
                           default=_environment("BENCH_BASELINE_S", 20, float),
                           help="length of each baseline (BENCH_BASELINE_S; default %(default)s)")
    baselines.add_argument("--skip-baselines", action="store_true",
                           help="run only the system (no ratios)")
    target = parser.add_argument_group("target and output")
    target.add_argument("--url", default=os.environ.get("BENCH_URL"),
                        help="the gateway (BENCH_URL; default: config.yml gateway.public_url)")
    target.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL"),
                        help="PostgreSQL of the raw baseline (BENCH_DATABASE_URL; default: "
                        "config.yml database.url); it works in a scratch schema 'bench_baseline'")
    target.add_argument("--reports-dir", default=_environment("BENCH_REPORTS_DIR", "reports"),
                        help="where the bench-<UTC time> folder goes "
                        "(BENCH_REPORTS_DIR; default %(default)s)")
    target.add_argument("--stop", action="store_true",
                        help="stop the system at the end even if it was already running")
    bench_transfers.add_arguments(parser, _environment)
    bench_verdict.add_arguments(parser, _environment)
    arguments = parser.parse_args(argv)
    scenarios = bench_transfers.chosen(arguments)  # refuses an unknown one now, not later
    unmeasurable = bench_verdict.unmeasurable(arguments, scenarios)
    if unmeasurable:
        parser.error(unmeasurable)
    if min(arguments.users, arguments.step_users) < 1 or min(
            arguments.step_seconds, arguments.seconds, arguments.baseline_seconds) <= 0:
        parser.error("users, step users and every length must be positive")
    arguments.url = (arguments.url or bench_system.configured_gateway_url()).rstrip("/")
    arguments.database_url = arguments.database_url or bench_system.configured_database_url()
    return arguments


def settings_of(arguments):
    return {"users": arguments.users, "step_users": arguments.step_users,
            "step_s": arguments.step_seconds, "run_s": arguments.seconds,
            "spawn_rate_per_s": max(1, arguments.step_users),
            "think_max_s": arguments.think_max_seconds,
            "baseline_s": None if arguments.skip_baselines else arguments.baseline_seconds,
            "url": arguments.url}


def machine():
    # The version from the package metadata: importing locust would monkey-patch this process.
    from importlib.metadata import version

    return {"cpu_count": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(), "locust": version("locust")}


# --- phases ----------------------------------------------------------------------------


def run_locust_phase(progress, name, command, log_path, environment, expected_s):
    process = bench_locust.start_locust(command, log_path, environment)
    try:
        progress.wait(name, expected_s + bench_locust.LOCUST_START_S,
                      lambda: process.poll() is not None)
    except BaseException:
        process.terminate()
        process.wait(timeout=30)
        raise
    if process.returncode != 0:
        raise RuntimeError("Locust exited with {}; see {}".format(process.returncode, log_path))


def health_baseline(progress, arguments, folder):
    command = bench_locust.locust_command(
        bench_locust.HEALTH_ONLY, arguments.url, folder / "health",
        users=arguments.users, spawn_rate=max(1, arguments.step_users),
        run_s=arguments.baseline_seconds)
    run_locust_phase(progress, "baseline: GET /health", command, folder / "health_locust.log",
                     {}, arguments.baseline_seconds)
    return bench_summary.read_locust_run(folder / "health")


def database_baseline(progress, arguments):
    outcome = {}

    def measure():
        try:
            outcome["figures"] = baseline_db.run_baseline(
                arguments.database_url, arguments.users, arguments.baseline_seconds)
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            outcome["error"] = error

    worker = threading.Thread(target=measure, daemon=True)
    worker.start()
    progress.wait("baseline: raw PostgreSQL transfers", arguments.baseline_seconds,
                  lambda: not worker.is_alive())
    if "error" in outcome:
        raise outcome["error"]
    return outcome["figures"]


def system_run(progress, arguments, folder, probe):
    """The mix: its Locust figures, and its costs per completed transfer (the mix moves
    other money and reads too, so these are what a transfer costs among the rest)."""
    command = bench_locust.locust_command(bench_locust.WORKLOAD, arguments.url,
                                          folder / "locust", html_path=folder / "locust.html",
                                          shape=bench_locust.STEP_SHAPE)
    environment = {"BENCH_USERS": str(arguments.users),
                   "BENCH_STEP_USERS": str(arguments.step_users),
                   "BENCH_STEP_S": str(arguments.step_seconds),
                   "BENCH_RUN_S": str(arguments.seconds),
                   "BENCH_THINK_MAX_S": str(arguments.think_max_seconds)}
    before = Snapshot.take(probe)
    run_locust_phase(progress, "mix: the workload, step load", command,
                     folder / "locust.log", environment, arguments.seconds)
    figures = bench_summary.read_locust_run(folder / "locust")
    figures["costs"] = Snapshot.take(probe).since(before, probe).figures()
    return figures


# --- the report ---------------------------------------------------------------------------


def _ms(latency):
    return " / ".join("-" if latency[key] is None else "{:g}".format(latency[key])
                      for key in ("p50", "p95", "p99"))


def _value(value, unit=""):
    return "-" if value is None else "{:g}{}".format(value, unit)


def summary_table(summary):
    """The printed summary: the figures side by side, then the ratios."""
    system = summary["system"]
    health = summary["baselines"].get("health")
    database = summary["baselines"].get("raw_postgres")
    settings = summary["settings"]
    full_load = system.get("full_load") or {}
    health_full = (health or {}).get("full_load") or {}
    rows = [
        ("", "system", "GET /health", "raw PostgreSQL"),
        ("requests/s (whole run)", _value(system["requests_per_s"]),
         _value(health and health["requests_per_s"]), ""),
        ("requests/s at {} users".format(settings["users"]),
         _value(full_load.get("requests_per_s")),
         _value(health_full.get("requests_per_s")), ""),
        ("completed transfers/s (whole run)", _value(system["transfers"]["completed_per_s"]),
         "", _value(database and database["transfers_per_s"])),
        ("completed transfers/s at {} users".format(settings["users"]),
         _value(full_load.get("completed_transfers_per_s")), "", ""),
        ("latency ms p50/p95/p99, all", _ms(system["latency_ms"]),
         _ms(health["latency_ms"]) if health else "", ""),
        ("latency ms p50/p95/p99, transfer", _ms(system["transfers"]["latency_ms"]), "",
         _ms(database["latency_ms"]) if database else ""),
        ("requests / failures", "{} / {}".format(system["requests"], system["failures"]),
         "{} / {}".format(health["requests"], health["failures"]) if health else "",
         "{} / {} refused".format(database["transfers_committed"],
                                  database["transfers_refused"]) if database else ""),
    ]
    widths = [max(len(str(row[i])) for row in rows) for i in range(4)]
    lines = ["", "Benchmark: {users} users (+{step_users} every {step_s:g} s), {run_s:g} s run, "
             "baselines {baseline}".format(baseline="{:g} s".format(settings["baseline_s"])
                                           if settings["baseline_s"] else "skipped", **settings)]
    lines += ["  " + "  ".join(str(cell).ljust(widths[i]) if i == 0 else str(cell).rjust(widths[i])
                               for i, cell in enumerate(row)) for row in rows]
    errors = system["errors"]
    lines.append("  errors: {}".format(", ".join("{} × {}".format(count, label) for label, count
                                                 in errors["by_type"].items()) or "none"))
    failed = system["transfers"]["failed_by_reason"]
    if failed:
        lines.append("  transfers refused (business outcome): {}".format(
            ", ".join("{} × {}".format(count, reason) for reason, count in failed.items())))
    ratios = summary["ratios"]
    lines += ["", "Ratios (system at full load ÷ baseline):",
              "  completed transfers/s ÷ raw PostgreSQL transfers/s  {}".format(
                  _value(ratios["completed_transfers_per_s_vs_raw_postgres"])),
              "  requests/s ÷ GET /health requests/s                 {}".format(
                  _value(ratios["requests_per_s_vs_health"])),
              "  transfer p50 ÷ GET /health p50                      {}".format(
                  _value(ratios["transfer_p50_vs_health_p50"]))]
    lines += ["", "Machine: {cpu_count} CPUs, Python {python}, Locust {locust}".format(
        **summary["machine"]), "Report: {}".format(summary["report_dir"])]
    if not summary["system_under_test"]["started_by_benchmark"]:
        lines.append("Note: the system was already running; its own rate limits applied.")
    return "\n".join(lines)


def write_report(folder, summary):
    from loadtests.bench_chart import draw_chart

    (folder / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    series = bench_summary.history_series(bench_summary.read_csv(
        folder / "locust_stats_history.csv"))
    if series:
        settings = summary["settings"]
        draw_chart(series, folder / "chart.png", "paysys: {} users (+{} every {:g} s), {}".format(
            settings["users"], settings["step_users"], settings["step_s"],
            summary["started_at"]))


# --- main ------------------------------------------------------------------------------------


def main(argv=None):
    arguments = parse_arguments(argv)
    started_at = datetime.now(timezone.utc)
    # Absolute: Locust runs in loadtests/ and reads the payers' file from here.
    folder = Path(arguments.reports_dir).resolve() / "bench-{}".format(
        started_at.strftime("%Y%m%dT%H%M%SZ"))
    folder.mkdir(parents=True, exist_ok=False)
    mix = "mix" in bench_transfers.chosen(arguments)
    phases = 1 + (0 if arguments.skip_baselines else 2) + mix + bench_transfers.phases(
        arguments)
    progress = Progress(phases)
    progress.say("Benchmark of {} → {}".format(arguments.url, folder))

    system_log = folder / "paysys.log"
    was_running = bench_system.is_ready(arguments.url)
    started_here = False
    try:
        if was_running:
            progress.say("The system is already up at {}: its own rate limits apply (per IP and "
                         "per user; X-Forwarded-For only if it trusts 127.0.0.1), and any 429 "
                         "counts as an error.".format(arguments.url))
            progress.wait("system: already ready", 0, lambda: True, poll_s=0)
        else:
            outcome = {}
            starter = threading.Thread(target=_start_into, args=(system_log, outcome),
                                       daemon=True)
            starter.start()
            started_here = True
            progress.wait("system: paysys up (limits raised)", 60, lambda: not starter.is_alive())
            if "error" in outcome:
                raise outcome["error"]
            if not bench_system.is_ready(arguments.url):
                raise RuntimeError("{}/ready is not 200 after `paysys up`; see {}".format(
                    arguments.url, system_log))

        baselines = {}
        if not arguments.skip_baselines:
            baselines["health"] = health_baseline(progress, arguments, folder)
            baselines["raw_postgres"] = database_baseline(progress, arguments)
        config = load_config()
        probe = Probe(arguments.database_url, config)
        system = system_run(progress, arguments, folder, probe) if mix else None
        transfers_only = bench_transfers.with_ratios(
            bench_transfers.run_all(arguments, folder, progress, config,
                                    lambda action, program: _control(config, action,
                                                                     program)),
            baselines.get("raw_postgres"), baselines.get("health"))

        summary = {
            "started_at": started_at.isoformat(timespec="seconds"),
            "report_dir": str(folder),
            "settings": settings_of(arguments),
            "machine": machine(),
            "system_under_test": {
                "url": arguments.url, "started_by_benchmark": started_here,
                "rate_limits": ("raised by the benchmark: " + ", ".join(
                    "{}={}".format(k, v) for k, v in bench_system.BENCHMARK_ENVIRONMENT.items())
                    if started_here else "the running system's own")},
            "system": system,
            "transfers_only": transfers_only,
            "baselines": baselines,
            "ratios": bench_summary.ratios(system, baselines.get("health"),
                                           baselines.get("raw_postgres")) if system else None,
        }
        status, verdict, checks = bench_verdict.judge(summary, bench_verdict.asked(arguments))
        summary["verdict"] = {"line": verdict, "exit_status": status,
                              "checks": [check.as_dict() for check in checks]}
        write_report(folder, summary)
        print(summary_table(summary) if system else "")
        print("\n".join(bench_transfers.table(transfers_only)))
        if verdict:
            print("\n" + verdict)
        return status
    finally:
        if arguments.stop or started_here:
            progress.say("Stopping the system (`paysys down`) …")
            bench_system.stop(system_log)


def load_config():
    from shared.config import load_config as load

    return load()


def _control(config, action, program):
    """Stop or start one process of the system under test (supervisorctl)."""
    from paysys import supervisor

    done = supervisor.supervisorctl(supervisor.RunDir(config), action,
                                    "{}:{}".format(supervisor.SERVICES_GROUP, program),
                                    capture=True)
    if done.returncode != 0:
        raise RuntimeError("supervisorctl {} {}: {}".format(action, program,
                                                            done.stdout + done.stderr))


def _start_into(log_path, outcome):
    try:
        outcome["seconds"] = bench_system.start(log_path)
    except BaseException as error:  # noqa: BLE001 - reported by the main thread
        outcome["error"] = error


if __name__ == "__main__":
    sys.exit(main())
