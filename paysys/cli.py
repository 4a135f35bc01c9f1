"""`paysys`: run and administer the payment system.

    paysys up                  start every service (what `make up` runs)
    paysys down                stop everything `up` started
    paysys ps | logs | status  look at it
    paysys migrate             create the database, run every service's migrations
    paysys keys                create the signing keys and the webhook-secret key if absent
    paysys create-user --email E --password P --role admin
    paysys reconcile [--json]  check the books and the Kafka mirror (exit 0 when balanced)
    paysys serve NAME          run one service process in the foreground
    paysys health [--live]     does the service process of this container serve? (probes)
"""
import argparse
import json
import sys
import time


def _config():
    from shared.config import load_config

    return load_config()


def _gateway_url(config):
    return config["gateway"]["public_url"].rstrip("/")


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

    url = config["database"]["url"]
    if ensure_database(url):
        print("created database {}".format(url.rsplit("/", 1)[-1]))
    migrate(url)
    return 0


def cmd_keys(args, config):
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
    return 0


def cmd_up(args, config):
    from paysys import supervisor
    from paysys.checks import check_all, tansu_binary
    from paysys.database import ensure_database, migrate
    from services.notifications.secret_box import ensure_webhook_key
    from shared.config import kafka_is_embedded
    from shared.tokens import ensure_keypair
    from shared.votes import ensure_validator_keys

    if not supervisor.installed():
        print("paysys up runs every service under supervisord, which is not installed: "
              "pip install -e '.[local]' (make install does).")
        return 1
    print("Checking dependencies…")
    findings = check_all(config)
    missing = [finding for finding in findings if finding.problem]
    for finding in findings:
        print("  {:<24} {:<22} {}".format(finding.name, finding.address,
                                          finding.problem or "ok"))
    if missing:
        print("\nThe system cannot start: {} not available.".format(
            ", ".join(finding.name for finding in missing)))
        for finding in missing:
            print("  {}: {}".format(finding.name, finding.remedy))
        return 1

    print("Migrating {}…".format(config["database"]["url"]))
    if ensure_database(config["database"]["url"]):
        print("  created the database")
    migrate(config["database"]["url"])
    if ensure_keypair(config):
        print("Created the key pair that signs access tokens")
    if ensure_validator_keys(config):
        print("Created the validators' vote-signing keys")
    if ensure_webhook_key(config):
        print("Created the key that seals webhook secrets")

    run_dir = supervisor.RunDir(config)
    tansu = tansu_binary() if kafka_is_embedded(config) else None
    started = supervisor.start(config, run_dir, tansu)
    print("{} supervisord ({}); logs in {}".format(
        "Started" if started else "Already running:", run_dir.conf, run_dir.logs))
    return _wait_until_ready(config, int(config["supervisor"]["ready_timeout_s"]))


def _wait_until_ready(config, timeout_s):
    url = _gateway_url(config)
    deadline = time.monotonic() + timeout_s
    print("Waiting for {}/ready".format(url), end="", flush=True)
    body = None
    while time.monotonic() < deadline:
        status, body = fetch_ready(config)
        if status == 200:
            print(" ready.\n")
            print("The gateway listens on {}".format(url))
            print("Try:  curl -s {}/ready".format(url))
            print("Stop: make down   Status: make ps   Logs: make logs")
            return 0
        print(".", end="", flush=True)
        time.sleep(1)
    print("\nNot ready after {} s. Last answer of /ready: {}".format(timeout_s, body))
    print("See `make logs` (or {}/logs/NAME.log).".format(config["supervisor"]["run_dir"]))
    return 1


def cmd_down(args, config):
    from paysys import supervisor

    run_dir = supervisor.RunDir(config)
    if supervisor.stop(run_dir):
        print("Stopped every process of {}".format(run_dir.conf))
    else:
        print("Nothing to stop: no supervisord runs from {}".format(run_dir.path))
    return 0


def cmd_ps(args, config):
    from paysys import supervisor

    run_dir = supervisor.RunDir(config)
    if not run_dir.supervisord_pid():
        print("Not running (no supervisord from {}). Start it with `make up`.".format(
            run_dir.path))
        return 3
    return supervisor.supervisorctl(run_dir, "status").returncode


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
    print("{} → {} {}".format(_gateway_url(config) + "/ready", status, body.get("status")))
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
    engine = create_engine(sqlalchemy_url(config["database"]["url"]))
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

    return run(config, as_json=args.json, wait_s=args.wait)


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
    commands.add_parser("keys", help="create the Ed25519 key pair that signs access tokens, "
                        "the validators' keys and the key of webhook secrets, each if absent "
                        "(`up` does this too)").set_defaults(handler=cmd_keys)

    create_user = commands.add_parser(
        "create-user", help="create a user, or add a role to an existing one (the only way to "
        "make admins and auditors)")
    create_user.add_argument("--email", required=True)
    create_user.add_argument("--password", help="at least 12 characters (new users only)")
    create_user.add_argument("--full-name", help="default: the e-mail address")
    create_user.add_argument("--role", default="customer",
                             choices=["customer", "merchant", "admin", "auditor"])
    create_user.set_defaults(handler=cmd_create_user)

    reconcile = commands.add_parser(
        "reconcile", help="check that every currency sums to zero, every balance equals its "
        "entries and the Kafka mirror holds every posting; exit 0 when balanced, 1 when not, "
        "2 when PostgreSQL or Kafka does not answer")
    reconcile.add_argument("--json", action="store_true", help="print the raw report")
    reconcile.add_argument("--wait", type=float, metavar="SECONDS",
                           help="how long the ledger's relay gets to publish the newest "
                           "postings before Kafka is read (default: kafka.reconcile_wait_ms)")
    reconcile.set_defaults(handler=cmd_reconcile)

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
    return args.handler(args, _config())


if __name__ == "__main__":
    sys.exit(main())
