"""The bank workload and its checker as a command, against a running system over HTTP.

Concurrent clients transfer random amounts among a set of accounts; some
replay a request with the same Idempotency-Key. Every client operation is
recorded (invoke, ok, fail, unknown). Afterwards the checker reads the books
through the API and says whether money was conserved, no balance went
negative, each account's entries sum to its balance, each acknowledged
completed transfer is posted exactly once, each failed one moved nothing and
nothing stayed pending.

    python -m loadtests.bank --url http://127.0.0.1:8000 --clients 8 --seconds 20

prints completed transfers per second and the latency percentiles, then the
checker's verdict (exit status 1 if it found a problem).
"""
import argparse
import sys

from harness.bank import Bank
from harness.bank_checker import check


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (users)")
    parser.add_argument("--accounts", type=int, default=2, help="accounts per client")
    parser.add_argument("--seconds", type=float, default=20)
    args = parser.parse_args(argv)
    print("Opening {} clients × {} accounts on {} …".format(args.clients, args.accounts,
                                                            args.url))
    bank = Bank(args.url, users=args.clients, accounts_per_user=args.accounts).open()
    print("Transferring for {} s …".format(args.seconds))
    figures = bank.figures(bank.run(seconds=args.seconds))
    for name, value in figures.items():
        print("  {:<16} {}".format(name, value))
    problems = check(bank)
    print("Checker: {}".format("the books are right" if not problems else "PROBLEMS"))
    for problem in problems:
        print("  " + problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
