"""Chaos experiments against a sandbox of the whole system (a database, vhost, Redis
database and ports of its own), each with a load, a fault, its healing and the bank
checker; a report folder per experiment and a table of all of them.

    python -m chaos                      # every experiment (make chaos)
    python -m chaos --exp redis-cut      # one (make chaos EXP=redis-cut)
    python -m chaos --list
    python -m chaos --postgres-ha        # PostgreSQL as a primary and a standby (pg_auto_failover)
    python -m chaos --exp kill-replica --replicas 2   # every service twice over
    python -m chaos --rabbitmq-nodes 3   # on a RabbitMQ cluster of the sandbox's own
    python -m chaos --cluster            # all three: the cluster's experiments (make chaos-cluster)

Some experiments stop and start the machine's RabbitMQ, PostgreSQL and Redis (with the
commands of harness/servers.py): run them where that is yours to do.
"""
import argparse
import json
import os
import signal
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from chaos import report
from chaos.cluster_experiments import CUT_VALIDATOR, CUT_VALIDATOR_PROXY
from chaos.experiment import Target, Timings, run
from chaos.experiments import CLUSTER, catalogue
from harness.proxy import ProxyGroup, TcpProxy
from harness.sandbox import System
from paysys import process_overrides


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
    parser.add_argument("--postgres-ha", action="store_true",
                        help="the sandbox's PostgreSQL is a pg_auto_failover primary and "
                        "synchronous standby of its own (PAYSYS_POSTGRES_HA=1), for "
                        "postgres-primary-kill; the experiments on the machine's PostgreSQL "
                        "are left out")
    parser.add_argument("--replicas", type=int, default=None,
                        help="processes of every service in the sandbox (PAYSYS_REPLICAS); "
                        "default: the environment's PAYSYS_REPLICAS, else 2 if kill-replica "
                        "runs, else 1")
    parser.add_argument("--label", default="chaos",
                        help="the sandbox's name: its database and vhost are paysys_LABEL "
                        "(two runs side by side need two labels)")
    parser.add_argument("--redis-db", type=int, default=11,
                        help="the sandbox's Redis database (flushed at start)")
    parser.add_argument("--reports", type=Path, default=Path("reports"),
                        help="where the report folder goes (default: reports/)")
    parser.add_argument("--cluster", action="store_true",
                        help="the whole cluster: --replicas 2 --rabbitmq-nodes 3 "
                        "--postgres-ha, and by default its experiments only (CLUSTER)")
    parser.add_argument("--rabbitmq-nodes", type=int, default=1, metavar="N",
                        help="1 (default): the sandbox uses a vhost of the machine's "
                        "RabbitMQ; 3: a RabbitMQ cluster of its own, which "
                        "rabbitmq-node-kill needs (rabbitmq-restart needs 1)")
    args = parser.parse_args(argv)
    if args.cluster:
        # What issue-style "the cluster" means: every part of it at once.
        args.replicas = args.replicas or 2
        args.rabbitmq_nodes = max(args.rabbitmq_nodes, 3)
        args.postgres_ha = True
        args.exp = args.exp or list(CLUSTER)
    return args, experiments


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
            print("{:<22} {}".format(name, experiment.description))
        return 0
    chosen = [experiments[name] for name in (args.exp or experiments)]
    left_out = [e.name for e in chosen if e.postgres_ha not in (None, args.postgres_ha)
                or not e.runs_on(args.rabbitmq_nodes)]
    if left_out and args.exp:
        print("{} cannot run on this sandbox (--postgres-ha {}, --rabbitmq-nodes {}): "
              "see --list".format(", ".join(left_out), "on" if args.postgres_ha else "off",
                                  args.rabbitmq_nodes))
        return 2
    if left_out:
        print("Left out (they need another sandbox: --postgres-ha, --rabbitmq-nodes): "
              "{}".format(", ".join(left_out)))
        chosen = [e for e in chosen if e.name not in left_out]
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    folder = args.reports / "chaos-{}".format(stamp)
    proxies = {"postgresql": TcpProxy(("127.0.0.1", 5432)).start(),
               "redis": TcpProxy(("127.0.0.1", 6379)).start()}
    env = {
        # The services reach PostgreSQL and Redis through the proxies (network faults).
        "PAYSYS_DATABASE_URL": "postgresql://postgres@127.0.0.1:{}/paysys_{}".format(
            proxies["postgresql"].port, args.label),
        "PAYSYS_REDIS_URL": "redis://127.0.0.1:{}/{}".format(proxies["redis"].port,
                                                             args.redis_db),
        "PAYSYS_REPLICAS": str(replicas(args)),
        # The bank clients name themselves (X-Forwarded-For) for the per-IP limit.
        "PAYSYS_TRUSTED_PROXIES": "127.0.0.1",
    }
    if args.postgres_ha:
        # The formation's own nodes (the URL's host is replaced by theirs).
        env["PAYSYS_DATABASE_URL"] = "postgresql://postgres@127.0.0.1/paysys_{}".format(
            args.label)
    sandbox = System(args.label, Path(tempfile.mkdtemp(prefix="paysys-chaos-")),
                     redis_db=args.redis_db, env=env, postgres_ha=args.postgres_ha,
                     rabbitmq_nodes=args.rabbitmq_nodes)
    # One validator's processes alone reach RabbitMQ (each node of it) through proxies of
    # their own (paysys/process_overrides.py), which validator-rabbitmq-cut cuts.
    proxies[CUT_VALIDATOR_PROXY] = cut_validator_proxies(sandbox, args.label)
    sandbox.env[process_overrides.variable(CUT_VALIDATOR, "AMQP_URI")] = \
        proxies[CUT_VALIDATOR_PROXY].amqp_uri
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
            print("  {} in {:.0f} s: {}{}".format(
                summary["verdict"], time.monotonic() - began,
                "; ".join(summary["problems"]) or "books right",
                "".join(" ({}={})".format(key, value)
                        for key, value in summary["observations"].items())))
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


def cut_validator_proxies(sandbox, label):
    """A proxy in front of each RabbitMQ node the sandbox uses, and the AMQP URI (a failover
    list on a cluster) that reaches them through the proxies."""
    from shared.rabbitmq import failover_uri, nodes_of

    nodes = nodes_of(sandbox.config())
    if nodes:
        group = ProxyGroup([TcpProxy(("127.0.0.1", node.amqp_port)).start()
                            for node in nodes])
        group.amqp_uri = ";".join("pyamqp://guest:guest@127.0.0.1:{}/".format(proxy.port)
                                  for proxy in group.proxies)
        return group
    group = ProxyGroup([TcpProxy(("127.0.0.1", 5672)).start()])
    group.amqp_uri = "pyamqp://guest:guest@127.0.0.1:{}/paysys_{}".format(
        group.proxies[0].port, label)
    return group


def replicas(args):
    """Processes of every service in the sandbox: ``--replicas``, else the environment's
    PAYSYS_REPLICAS, else 2 where an experiment kills a replica (1 otherwise)."""
    if args.replicas is not None:
        return args.replicas
    if os.environ.get("PAYSYS_REPLICAS"):
        return int(os.environ["PAYSYS_REPLICAS"])
    return 2 if "kill-replica" in (args.exp or ()) else 1


def table(summaries):
    lines = ["", "{:<22} {:>7} {:>9} {:>9} {:>9} {:>9} {:>10}".format(
        "experiment", "verdict", "before/s", "during/s", "during %", "after/s", "recover s")]
    for s in summaries:
        rate = s["completed_per_s"]
        share = s["during_vs_healthy"]
        lines.append("{:<22} {:>7} {:>9} {:>9} {:>9} {:>9} {:>10}".format(
            s["experiment"], s["verdict"], rate["before"], rate["during"],
            "-" if share is None else "{:.0f}%".format(share * 100), rate["after"],
            s["recovered_after_heal_s"]))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
