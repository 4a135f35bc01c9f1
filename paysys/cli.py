"""`paysys`: run and administer the payment system.

    paysys up                  start every service (what `make up` runs)
    paysys down                stop everything `up` started
    paysys ps | logs | status  look at it
    paysys migrate             create the database, run every service's migrations
    paysys keys                create the signing keys and the webhook-secret key if absent
    paysys keys rotate NAME    a new vote-signing key for validator NAME; the old one is
                               accepted for validators.key_grace_period_s more
    paysys keys revoke NAME    the same, the old key refused at once (a leaked key)
    paysys create-user --email E --password P --role admin
    paysys reconcile [--json]  check the books and the Kafka mirror (exit 0 balanced, 1 broken,
                               2 unavailable, 3 still catching up)
    paysys serve NAME          run one service process in the foreground
    paysys health [--live]     does the service process of this container serve? (probes)
    paysys config [--service NAME] [--format yaml|table] [--docs]
                               the effective settings, secrets masked
"""
import argparse
import json
import sys
import textwrap
import time


def _config(check=True):
    """config.yml, environment substituted; with ``check``, every settings model is
    validated first and a bad value ends the command (exit 2) naming it."""
    from shared.config import load_config

    config = load_config()
    if check:
        from shared.catalog import settings_models
        from shared.settings import SettingsError, load_all

        try:
            load_all(settings_models(), config)
        except SettingsError as error:
            print("paysys: {}".format(error), file=sys.stderr)
            sys.exit(2)
    return config


def _shared(config):
    from shared.settings import load
    from shared.shared_settings import SharedSettings

    return load(SharedSettings, config)


def _gateway_url(config):
    from gateway.settings import GatewaySettings
    from shared.settings import load

    return load(GatewaySettings, config).gateway.public_url.rstrip("/")


def fetch_ready(config, timeout_s=5):
    """``(status_code, body)`` of GET /ready, or ``(None, reason)`` if nothing answers."""
    # Imported here: `paysys health`, a probe run every few seconds, does without them.
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(_gateway_url(config) + "/ready", timeout=timeout_s) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")
    except (OSError, ValueError) as error:
        return None, str(error)


def cmd_migrate(args, config):
    from paysys.database import ensure_database, migrate

    url = _shared(config).database.url
    if ensure_database(url):
        print("created database {}".format(url.rsplit("/", 1)[-1]))
    migrate(url)
    return 0


def cmd_keys(args, config):
    if args.action in ("rotate", "revoke"):
        return _rotate_validator_key(args, config)
    from services.notifications.secret_box import ensure_webhook_key
    from services.notifications.secret_box import key_file as webhook_key_file
    from shared.tokens import ensure_keypair, key_files
    from shared.votes import ensure_validator_keys, key_file

    created = ensure_keypair(config)
    private_path, public_path = key_files(config)
    print("{} the access-token key pair: {} (private), {} (public)".format(
        "Created" if created else "Kept", private_path, public_path))
    made = ensure_validator_keys(config)
    print("Vote-signing keys in {}: {}".format(
        key_file(config, "validator_1").parent,
        "created for " + ", ".join(made) if made else "all present"))
    print("{} the key of webhook secrets: {}".format(
        "Created" if ensure_webhook_key(config) else "Kept", webhook_key_file(config)))
    _redistribute(config)
    return 0


def _rotate_validator_key(args, config):
    from shared.votes import ensure_validator_keys, rotate_validator_key

    if args.name is None:
        print("paysys keys {}: name the validator, e.g. validator_2".format(args.action),
              file=sys.stderr)
        return 2
    if args.action == "revoke":
        grace_s = 0
    elif args.grace_s is not None:
        grace_s = args.grace_s
    else:
        grace_s = _shared(config).validators.key_grace_period_s
    ensure_validator_keys(config)
    try:
        rotation = rotate_validator_key(config, args.name, grace_s)
    except ValueError as error:
        print("paysys keys {}: {}".format(args.action, error), file=sys.stderr)
        return 2
    print("{}: signs with the new key {}; its old key {} is accepted until {}".format(
        rotation.validator_id, rotation.new_key_id, rotation.old_key_id,
        rotation.old_valid_until))
    _redistribute(config)
    return 0


def _redistribute(config):
    """A system started here (`paysys up`) gets the changed keys at once: each process's
    own copies are made again, and each picks up a changed file within a second."""
    from paysys import process_keys
    from shared.config import run_dir

    if not (run_dir(config) / process_keys.DIRECTORY).exists():
        return
    changed = process_keys.distribute(config)
    if changed:
        print("Copied the changed keys to {}".format(", ".join(changed)))


def cmd_up(args, config):
    from paysys import postgres_ha, supervisor
    from paysys.checks import check_all, tansu_binary
    from paysys.database import ensure_database, migrate
    from services.notifications.secret_box import ensure_webhook_key
    from paysys.settings_report import mask
    from shared.tokens import ensure_keypair
    from shared.votes import ensure_validator_keys

    if not supervisor.installed():
        print("paysys up runs every service under supervisord, which is not installed: "
              "pip install -e '.[local]' (make install does).")
        return 1
    if postgres_ha.enabled(config) and postgres_ha.up(config):
        return 1
    if _start_rabbitmq_cluster(config) != 0:
        return 1
    print("Checking dependencies…")
    findings = check_all(config)
    missing = [finding for finding in findings if finding.problem and finding.required]
    for finding in findings:
        print("  {:<24} {:<22} {}".format(finding.name, finding.address,
                                          finding.problem or "ok"))
    for finding in findings:
        if finding.problem and not finding.required:
            print("\nStarting without {} (the system serves degraded): {}".format(
                finding.name, finding.remedy))
    if missing:
        print("\nThe system cannot start: {} not available.".format(
            ", ".join(finding.name for finding in missing)))
        for finding in missing:
            print("  {}: {}".format(finding.name, finding.remedy))
        return 1

    url = _shared(config).database.url
    print("Migrating {}…".format(mask(url, secret=True)))
    if ensure_database(url):
        print("  created the database")
    migrate(url)
    if ensure_keypair(config):
        print("Created the key pair that signs access tokens")
    if ensure_validator_keys(config):
        print("Created the validators' vote-signing keys")
    if ensure_webhook_key(config):
        print("Created the key that seals webhook secrets")

    run_dir = supervisor.RunDir(config)
    tansu = tansu_binary() if _shared(config).kafka.embedded else None
    started = supervisor.start(config, run_dir, tansu)
    print("{} supervisord ({}); logs in {}".format(
        "Started" if started else "Already running:", run_dir.conf, run_dir.logs))
    return _wait_until_ready(config, _shared(config).supervisor.ready_timeout_s)


def _start_rabbitmq_cluster(config):
    """With ``rabbitmq.nodes`` > 1, the cluster of paysys/rabbitmq_cluster.py, before the
    services that connect to it."""
    from paysys import rabbitmq_cluster

    if not _shared(config).rabbitmq.clustered:
        return 0
    cluster = rabbitmq_cluster.Cluster(config)
    print("Starting the RabbitMQ cluster ({} nodes)…".format(len(cluster.members)))
    began = time.monotonic()
    try:
        started = cluster.start()
    except rabbitmq_cluster.ClusterError as error:
        print("\nThe system cannot start: {}".format(error))
        return 1
    for member in cluster.members:
        print("  {:<28} AMQP 127.0.0.1:{:<6} distribution {:<6} {}".format(
            member.name, member.node.amqp_port, member.node.dist_port,
            "started" if member.name in started else "running"))
    print("  one cluster after {:.0f} s; queues are {}; data and logs in {}".format(
        time.monotonic() - began, _shared(config).rabbitmq.services_queue_type,
        cluster.path))
    return 0


def _wait_until_ready(config, timeout_s):
    url = _gateway_url(config)
    deadline = time.monotonic() + timeout_s
    print("Waiting for {}/ready".format(url), end="", flush=True)
    body = None
    while time.monotonic() < deadline:
        status, body = fetch_ready(config)
        if status == 200 and not _processes_missing(config, body):
            degraded = body.get("degraded") or []
            print(" ready{}.\n".format(
                " (degraded: {} not answering)".format(", ".join(degraded)) if degraded else ""))
            print("The gateway listens on {}".format(url))
            print("Try:  curl -s {}/ready".format(url))
            _print_metrics_ports(config)
            print("Stop: make down   Status: make ps   Logs: make logs")
            return 0
        print(".", end="", flush=True)
        time.sleep(1)
    print("\nNot ready after {} s. Last answer of /ready: {}".format(timeout_s, body))
    print("See `make logs` (or {}/logs/NAME.log).".format(_shared(config).supervisor.run_dir))
    return 1


def _print_metrics_ports(config):
    from shared.metrics.ports import metrics_ports

    ports = sorted(metrics_ports(config).values())
    if ports:
        print("Metrics: GET /metrics and /livez on ports {}-{}, one per process "
              "(docs/metrics.md)".format(ports[0], ports[-1]))


def _processes_missing(config, body):
    """The service processes /ready says do not answer: a system just started waits for
    every one, not only for what /ready needs to be 200 (a degraded dependency, a dead
    Redis say, it reports and goes on)."""
    from shared.catalog import process_names

    processes = set(process_names(config))
    return [name for name in body.get("degraded") or [] if name in processes]


def cmd_down(args, config):
    from paysys import postgres_ha, supervisor

    run_dir = supervisor.RunDir(config)
    if supervisor.stop(run_dir):
        print("Stopped every process of {}".format(run_dir.conf))
    else:
        print("Nothing to stop: no supervisord runs from {}".format(run_dir.path))
    # After the services, which would otherwise see their database and broker go first:
    # the PostgreSQL formation and the RabbitMQ cluster `up` started, if any.
    if postgres_ha.down(config):
        print("Stopped PostgreSQL's pg_auto_failover formation")
    from paysys.rabbitmq_cluster import stop_nodes

    stopped = stop_nodes(run_dir.path / "rabbitmq")
    if stopped:
        print("Stopped the RabbitMQ nodes {}".format(", ".join(stopped)))
    return 0


def cmd_ps(args, config):
    from paysys import postgres_ha, supervisor

    run_dir = supervisor.RunDir(config)
    if not run_dir.supervisord_pid():
        print("Not running (no supervisord from {}). Start it with `make up`.".format(
            run_dir.path))
        return 3
    status = supervisor.supervisorctl(run_dir, "status").returncode
    from paysys import rabbitmq_cluster

    for line in postgres_ha.status_lines(config) + rabbitmq_cluster.status_lines(config):
        print(line)
    print_liveness(config)
    return status


def print_liveness(config, timeout_s=1):
    """Each process's answer to GET /livez on its metrics port (shared/metrics), asked of
    all at once: a frozen process costs the listing ``timeout_s``, not one per process."""
    from concurrent.futures import ThreadPoolExecutor

    from shared.metrics.ports import metrics_host, metrics_ports

    ports = metrics_ports(config)
    if not ports:
        return
    host = metrics_host(config)
    host = "127.0.0.1" if host in ("0.0.0.0", "") else host
    with ThreadPoolExecutor(max_workers=len(ports)) as pool:
        answers = list(pool.map(lambda port: _livez(host, port, timeout_s), ports.values()))
    print("\nLiveness (GET /livez on each metrics port):")
    for (name, port), answer in zip(ports.items(), answers):
        print("  {:<16} {:<22} {}".format(name, "{}:{}".format(host, port), answer))


def _livez(host, port, timeout_s):
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen("http://{}:{}/livez".format(host, port),
                                    timeout=timeout_s) as reply:
            return "live" if reply.status == 200 else "answered {}".format(reply.status)
    except urllib.error.HTTPError as error:
        return "answered {}".format(error.code)
    except OSError as error:
        return "no answer ({})".format(getattr(error, "reason", error))


def cmd_logs(args, config):
    from paysys import supervisor

    run_dir = supervisor.RunDir(config)
    names = args.names or sorted(path.stem for path in run_dir.logs.glob("*.log"))
    if not names:
        print("No logs in {}".format(run_dir.logs))
        return 1
    files = [str(run_dir.logs / (name + ".log")) for name in names]
    command = ["tail", "-n", str(args.lines)] + (["-F"] if args.follow else []) + files
    import subprocess

    return subprocess.run(command).returncode


def cmd_status(args, config):
    status, body = fetch_ready(config)
    if status is None:
        print("The gateway at {} does not answer: {}".format(_gateway_url(config), body))
        return 1
    # 200: status "ready" or "degraded"; 503 is a problem (its status the number).
    state = body.get("status") if status == 200 else "unavailable"
    print("{} → {} {}".format(_gateway_url(config) + "/ready", status, state))
    for label in ("unavailable", "degraded"):
        if body.get(label):
            print("  {}: {}".format(label, ", ".join(body[label])))
    for name, result in body.get("checks", {}).items():
        print("  {:<16} {}".format(name, result))
    return 0 if status == 200 else 1


def operator_name():
    """Who runs the command, for the audit trail: the login name, as the system knows it."""
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry nor USER/LOGNAME (some containers)
        return "unknown"


def cmd_create_user(args, config):
    import uuid

    from sqlalchemy import create_engine

    from services.auth.users import create_or_grant
    from shared.audit import CLI, Actor
    from shared.db import sqlalchemy_url

    # Each run is one request of its own in the audit trail.
    actor = Actor(CLI, operator_name(), str(uuid.uuid4()))
    engine = create_engine(sqlalchemy_url(_shared(config).database.url))
    try:
        with engine.begin() as connection:
            user, created = create_or_grant(
                connection, args.email, args.password, args.full_name, args.role, actor)
    except ValueError as error:
        print("paysys create-user: {}".format(error), file=sys.stderr)
        return 2
    finally:
        engine.dispose()
    print("{} user {} <{}> roles: {}".format(
        "Created" if created else "Updated", user.id, user.email, ", ".join(user.roles)))
    return 0


def cmd_reconcile(args, config):
    from paysys.reconcile import run

    return run(config, as_json=args.json, wait_s=args.wait, stall_s=args.stall)


def cmd_config(args, config):
    from paysys.settings_report import main

    return main(args, config)


def cmd_serve(args, config):
    from paysys.runner import serve

    serve(args.name)
    return 0


def cmd_health(args, config):
    from paysys.heartbeat import FILE_ENV, check, heartbeat_file

    path = args.file or heartbeat_file()
    if path is None:
        print("paysys health: no heartbeat file: set {} (the image does) or pass --file".format(
            FILE_ENV), file=sys.stderr)
        return 2
    healthy, message = check(path, args.max_age, args.live)
    print(message, file=sys.stdout if healthy else sys.stderr)
    return 0 if healthy else 1


def build_parser():
    parser = argparse.ArgumentParser(
        prog="paysys",
        description="Run and administer the payment system. Configuration: config.yml, "
        "with ${VAR:default} read from the environment (PAYSYS_CONFIG names another file).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = commands.add_parser("up", help="check dependencies, migrate, start every service, "
                             "wait until /ready is 200")
    up.set_defaults(handler=cmd_up)
    commands.add_parser("down", help="stop every process `up` started").set_defaults(
        handler=cmd_down)
    commands.add_parser("ps", help="the state of every process").set_defaults(handler=cmd_ps)
    logs = commands.add_parser("logs", help="the last lines of the service logs (JSON lines)")
    logs.add_argument("names", nargs="*", help="programs (default: all), e.g. gateway auth")
    logs.add_argument("-n", "--lines", type=int, default=20, help="lines per log (default 20)")
    logs.add_argument("-f", "--follow", action="store_true", help="keep following")
    logs.set_defaults(handler=cmd_logs)
    commands.add_parser("status", help="what GET /ready says of every dependency and service"
                        ).set_defaults(handler=cmd_status)
    commands.add_parser("migrate", help="create the database if needed and bring every "
                        "service's schema up to date").set_defaults(handler=cmd_migrate)
    keys = commands.add_parser(
        "keys", help="create the Ed25519 key pair that signs access tokens, the validators' "
        "vote-signing keys and the key of webhook secrets, each if absent (`up` does this "
        "too); `keys rotate NAME` gives validator NAME a new key, its old one accepted for a "
        "grace period; `keys revoke NAME` the same with none (docs/keys.md)")
    keys.add_argument("action", nargs="?", choices=["create", "rotate", "revoke"],
                      default="create")
    keys.add_argument("name", nargs="?", help="the validator to rotate: validator_1…N")
    keys.add_argument("--grace-s", type=int, metavar="SECONDS",
                      help="rotate: how long the old key stays accepted (default: "
                      "validators.key_grace_period_s, PAYSYS_VOTE_KEY_GRACE_S)")
    keys.set_defaults(handler=cmd_keys)

    create_user = commands.add_parser(
        "create-user", help="create a user, or add a role to an existing one (the only way to "
        "make admins and auditors)")
    create_user.add_argument("--email", required=True)
    create_user.add_argument("--password", help="at least 12 characters (new users only)")
    create_user.add_argument("--full-name", help="default: the e-mail address")
    create_user.add_argument("--role", default="customer",
                             choices=["customer", "merchant", "admin", "auditor"])
    create_user.set_defaults(handler=cmd_create_user)

    from paysys.reconcile import EXIT_STATUSES

    reconcile = commands.add_parser(
        "reconcile", help="check that every currency sums to zero, every balance equals its "
        "entries and the Kafka mirror holds every posting; exit 0 balanced, 1 broken, 2 "
        "PostgreSQL or Kafka does not answer, 3 the mirror is still catching up",
        description=textwrap.fill(
            "Check the books in one snapshot (every currency sums to zero, every balance "
            "equals its entries), wait while the ledger's relay still publishes that "
            "snapshot's postings to Kafka (progress on stderr), then read the whole topic and "
            "compare. It always prints what it compared: sums per currency, accounts, "
            "postings in the ledger and in Kafka, the offsets read, what the relay still had "
            "to publish.", 88),
        epilog=EXIT_STATUSES, formatter_class=argparse.RawDescriptionHelpFormatter)
    reconcile.add_argument("--json", action="store_true",
                           help="print the report as JSON (with verdict, reason, relay, offsets)")
    reconcile.add_argument("--wait", type=float, metavar="SECONDS",
                           help="how long to wait at most while the relay is still publishing "
                           "the snapshot's postings (default: ledger.reconcile_catch_up_ms, "
                           "PAYSYS_RECONCILE_CATCH_UP_MS, 60 s)")
    reconcile.add_argument("--stall", type=float, metavar="SECONDS",
                           help="a relay that publishes nothing for this long has stopped: "
                           "broken, exit 1 (default: ledger.reconcile_stall_ms, "
                           "PAYSYS_RECONCILE_STALL_MS, 15 s)")
    reconcile.set_defaults(handler=cmd_reconcile)

    config = commands.add_parser(
        "config", help="print the effective configuration: every settings model (or one), "
        "as config.yml and the environment give it, passwords and keys masked; exit 2 "
        "naming each bad value",
        description="Print the effective configuration: each settings model (shared, and "
        "one per service) as config.yml and the environment give it. Passwords in URLs and "
        "other secrets are masked. docs/configuration.md lists every variable.")
    config.add_argument("--service", metavar="NAME",
                        help="one model only: shared, auth, transactions, validator, "
                        "payments, ledger, notifications or gateway")
    config.add_argument("--format", choices=["yaml", "table"], default="yaml",
                        help="yaml (default) or a table with each key's variable")
    config.add_argument("--docs", action="store_true",
                        help="print docs/configuration.md (every variable, its type, default "
                        "and meaning) as generated from the models: `make config-docs`")
    config.set_defaults(handler=cmd_config)

    serve = commands.add_parser("serve", help="run one service process in the foreground "
                                "(supervisord does this for `up`)")
    serve.add_argument("name", help="auth, transactions, validator_1…N, payments, "
                       "ledger, notifications or gateway")
    serve.set_defaults(handler=cmd_serve)

    from paysys.heartbeat import FILE_ENV, MAX_AGE_S

    health = commands.add_parser(
        "health", help="exit 0 if the `paysys serve` process of this container serves: its "
        "event loop and RabbitMQ consumer ran lately (read from the heartbeat file it keeps), "
        "and the gateway answers /health; 1 if not. The image's HEALTHCHECK and the pods' "
        "probes run it")
    health.add_argument("--live", action="store_true",
                        help="only: is the process alive (its event loop runs)? Passes while "
                        "RabbitMQ is away, so a liveness probe does not restart every process "
                        "of the system when the broker restarts")
    health.add_argument("--max-age", type=float, default=MAX_AGE_S, metavar="SECONDS",
                        help="the oldest heartbeat that still counts (default {})".format(
                            MAX_AGE_S))
    health.add_argument("--file", help="the heartbeat file (default: ${})".format(FILE_ENV))
    health.set_defaults(handler=cmd_health)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        # Eventlet must patch the process before the configuration code imports anything.
        return cmd_serve(args, None)
    if args.command == "health":
        # A probe runs every few seconds: it reads one file and needs no configuration.
        return cmd_health(args, None)
    if args.command == "config":
        # It reports bad values itself, after what it can show.
        return cmd_config(args, None if args.docs else _config(check=False))
    return args.handler(args, _config())


if __name__ == "__main__":
    sys.exit(main())
