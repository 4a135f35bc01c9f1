"""The bank workload and its checker as a command, against a running system over HTTP.

    make bank                                       # the system `make up` started
    python -m loadtests.bank --url http://host:8000 --seconds 60 --clients 8

Clients register, open funded accounts and transfer money among themselves (with
replays of their Idempotency-Keys and, now and then, a payment the merchant captures in
part) for ``--seconds``; every operation is recorded as invoked, then ok, failed or
unknown. Then the checker (harness/bank_checker.py, the rules of harness/bank_rules.py)
reads the books through the API: money conserved, no balance negative, every account's
entries summing to its balance, each acknowledged transfer posted exactly once, failed
ones moved nothing, replays answered with the first transaction, nothing left pending.
With ``--reconcile`` (what `make bank` passes), `paysys reconcile` with this machine's
configuration then checks the ledger and that the Kafka mirror equals it.

Exit status: 0 the books are right, 1 a rule is broken, 2 the system did not answer.
Run it while you break something (a replica, a RabbitMQ node, the PostgreSQL primary):
the books must still be right (README.md, "Running as a cluster").
"""
import argparse
import subprocess
import sys
import time

import requests

from harness.bank import Bank
from harness.bank_checker import check

# A tenth of the opening balance per transfer: the accounts stay funded for minutes.
MAX_TRANSFER = 6_000
RECONCILE_ATTEMPTS = 5


def parse(argv):
    parser = argparse.ArgumentParser(prog="python -m loadtests.bank",
                                     description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="Exit status: 0 right, 1 wrong, 2 no answer.")
    parser.add_argument("--url", default=None,
                        help="the gateway (default: config.yml gateway.public_url)")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the run")
    parser.add_argument("--clients", type=int, default=6, help="concurrent bank clients")
    parser.add_argument("--accounts", type=int, default=2, help="accounts per client")
    parser.add_argument("--payments", type=float, default=0.1,
                        help="share of rounds that are a payment lifecycle (default 0.1)")
    parser.add_argument("--reconcile", action="store_true",
                        help="then run `paysys reconcile` (the ledger and the Kafka mirror; "
                             "needs this machine's configuration to reach the system)")
    return parser.parse_args(argv)


def _default_url():
    from gateway.settings import GatewaySettings
    from shared.config import load_config
    from shared.settings import load

    return load(GatewaySettings, load_config()).gateway.public_url.rstrip("/")


def _reconcile():
    """`paysys reconcile`'s exit status, asked again while the mirror is catching up."""
    for _ in range(RECONCILE_ATTEMPTS):
        status = subprocess.run([sys.executable, "-m", "paysys.cli", "reconcile"]).returncode
        if status != 3:
            return status
        time.sleep(2)
    return status


def main(argv=None):
    args = parse(argv)
    url = (args.url or _default_url()).rstrip("/")
    try:
        ready = requests.get(url + "/ready", timeout=10)
    except requests.RequestException as error:
        print("bank: {} does not answer: {}".format(url, error), file=sys.stderr)
        return 2
    if ready.status_code != 200:
        print("bank: {}/ready answers {}: {}".format(url, ready.status_code, ready.text[:300]),
              file=sys.stderr)
        return 2
    print("Opening {} bank clients on {} …".format(args.clients, url), flush=True)
    bank = Bank(url, users=args.clients, accounts_per_user=args.accounts,
                max_transfer=MAX_TRANSFER).open()
    print("Transferring for {:g} s …".format(args.seconds), flush=True)
    elapsed_s = bank.run(seconds=args.seconds, replay_fraction=0.15,
                         payment_fraction=args.payments)
    figures = bank.figures(elapsed_s)
    print("  {operations} operations: {completed} completed, {failed} failed, {unknown} "
          "unanswered; {completed_per_s}/s, p50 {p50_ms} ms, p99 {p99_ms} ms".format(**figures))
    print("Checking the books through the API …", flush=True)
    problems = check(bank)
    for problem in problems:
        print("  WRONG: {}".format(problem))
    reconciled = _reconcile() if args.reconcile else 0
    right = not problems and reconciled == 0
    print("Verdict: {}".format("the books are right" if right else "WRONG"))
    if right:
        return 0
    return 2 if reconciled == 2 and not problems else 1


if __name__ == "__main__":
    sys.exit(main())
