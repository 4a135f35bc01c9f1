"""Chaos experiments against a sandbox of the whole system (a database, vhost, Redis
database and ports of its own), each with a load, a fault, its healing and the bank
checker; a report folder per experiment and a table of all of them.

    python -m chaos                      # every experiment (make chaos)
    python -m chaos --exp redis-cut      # one (make chaos EXP=redis-cut)
    python -m chaos --list
    python -m chaos --rabbitmq-nodes 3   # on a RabbitMQ cluster of the sandbox's own

Some experiments stop and start the machine's RabbitMQ, PostgreSQL and Redis (with the
commands of harness/servers.py): run them where that is yours to do.
"""
import argparse
import json
import signal
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from chaos import report
from chaos.experiment import Target, Timings, run
from chaos.experiments import catalogue
from harness.proxy import TcpProxy
from harness.sandbox import System


def parse(argv):
    experiments = catalogue()
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exp", action="append", choices=sorted(experiments), metavar="NAME",
                        help="run this experiment (repeatable); default: all of them")
    parser.add_argument("--list", action="store_true", help="list the experiments and exit")
    parser.add_argument("--clients", type=int, default=4, help="concurrent bank clients")
    parser.add_argument("--before", type=float, default=6.0,
                        help="seconds of load before the fault")
    parser.add_argument("--after", type=float, default=8.0,
                        help="seconds of load after the system is ready again")
    parser.add_argument("--reports", type=Path, default=Path("reports"),
                        help="where the report folder goes (default: reports/)")
    parser.add_argument("--rabbitmq-nodes", type=int, default=1, metavar="N",
                        help="1 (default): the sandbox uses a vhost of the machine's "
                        "RabbitMQ; 3: a RabbitMQ cluster of its own, which "
                        "rabbitmq-node-kill needs (rabbitmq-restart needs 1)")
    return parser.parse_args(argv), experiments


def _exit_on_sigterm():
    """Stopped like a service (SIGTERM), still stop the sandbox and heal what is broken:
    the ``finally`` blocks run as they do on Ctrl-C."""
    def handler(signum, frame):
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, handler)


def main(argv=None):
    args, experiments = parse(argv)
    _exit_on_sigterm()
    if args.list:
        for name, experiment in experiments.items():
            print("{:<20} {}".format(name, experiment.description))
        return 0
    chosen = [experiments[name] for name in (args.exp or experiments)]
    elsewhere = [experiment.name for experiment in chosen
                 if not experiment.runs_on(args.rabbitmq_nodes)]
    if elsewhere and args.exp:
        print("{} cannot run with --rabbitmq-nodes {}".format(", ".join(elsewhere),
                                                           args.rabbitmq_nodes))
        return 2
    if elsewhere:
        print("Skipped with --rabbitmq-nodes {}: {}".format(args.rabbitmq_nodes,
                                                            ", ".join(elsewhere)))
        chosen = [experiment for experiment in chosen if experiment.name not in elsewhere]
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    folder = args.reports / "chaos-{}".format(stamp)
    proxies = {"postgresql": TcpProxy(("127.0.0.1", 5432)).start(),
               "redis": TcpProxy(("127.0.0.1", 6379)).start()}
    sandbox = System("chaos", Path(tempfile.mkdtemp(prefix="paysys-chaos-")), redis_db=11, env={
        # The services reach PostgreSQL and Redis through the proxies (network faults).
        "PAYSYS_DATABASE_URL": "postgresql://postgres@127.0.0.1:{}/paysys_chaos".format(
            proxies["postgresql"].port),
        "PAYSYS_REDIS_URL": "redis://127.0.0.1:{}/11".format(proxies["redis"].port),
        # The bank clients name themselves (X-Forwarded-For) for the per-IP limit.
        "PAYSYS_TRUSTED_PROXIES": "127.0.0.1",
    }, rabbitmq_nodes=args.rabbitmq_nodes)
    print("Starting a sandbox of the system on {} …".format(sandbox.url))
    summaries = []
    try:
        sandbox.start()
        target = Target(sandbox, proxies)
        timings = Timings(before_s=args.before, after_s=args.after)
        for index, experiment in enumerate(chosen, 1):
            print("[{}/{}] {} — {}".format(index, len(chosen), experiment.name,
                                           experiment.description))
            began = time.monotonic()
            result = run(experiment, target, clients=args.clients, timings=timings)
            summary = report.write(result, folder / experiment.name)
            summaries.append(summary)
            print("  {} in {:.0f} s: {}".format(summary["verdict"], time.monotonic() - began,
                                                "; ".join(summary["problems"]) or "books right"))
    finally:
        print("Stopping the sandbox …")
        sandbox.stop()
        for proxy in proxies.values():
            proxy.stop()
    if summaries:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "summary.json").write_text(json.dumps(summaries, indent=2) + "\n")
        print(table(summaries))
        print("Reports: {}".format(folder))
    return 0 if summaries and all(s["verdict"] == "pass" for s in summaries) else 1


def table(summaries):
    lines = ["", "{:<20} {:>7} {:>9} {:>9} {:>9} {:>9} {:>10}".format(
        "experiment", "verdict", "before/s", "during/s", "during %", "after/s", "recover s")]
    for s in summaries:
        rate = s["completed_per_s"]
        share = s["during_vs_healthy"]
        lines.append("{:<20} {:>7} {:>9} {:>9} {:>9} {:>9} {:>10}".format(
            s["experiment"], s["verdict"], rate["before"], rate["during"],
            "-" if share is None else "{:.0f}%".format(share * 100), rate["after"],
            s["recovered_after_heal_s"]))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
