"""Baseline: how many transfers a second PostgreSQL alone commits on this machine.

N threads (the benchmark's user count), each with its own connection, loop
for a set time over one database transaction per transfer — the least a
double-entry transfer can cost:

    UPDATE accounts SET balance = balance - x   (CHECK balance >= 0 refuses an overdraft)
    UPDATE accounts SET balance = balance + x
    INSERT two entries (debit and credit, each with balance_after)
    COMMIT

The two rows are locked in id order, as the ledger locks them, so threads
never deadlock. The system's completed transfers/s divided by this figure is
the share of the database's raw capacity that the system delivers once
validation, voting, RPC, idempotency and the outbox are paid for.

It works in a scratch schema (default ``bench_baseline``) of the system's
database, created at the start and dropped at the end, and never touches the
system's own schemas.

    python -m loadtests.baseline_db --threads 20 --seconds 20
"""
import argparse
import random
import threading
import time
from dataclasses import dataclass, field

import psycopg2
from psycopg2 import errors, sql

from harness.bank import percentile

SCHEMA = "bench_baseline"
OPENING_BALANCE_MINOR = 1_000_000
MAX_TRANSFER_MINOR = 50_000
STATEMENT_TIMEOUT_MS = 15_000  # a bound on every statement, as the services have


@dataclass
class LoopResult:
    """What the threads did: committed transfers, refused ones (overdraft), their latencies."""

    threads: int
    accounts: int
    elapsed_s: float = 0.0
    committed: int = 0
    refused: int = 0
    latencies_ms: list = field(default_factory=list)
    errors: list = field(default_factory=list)  # a thread stops at its first unexpected error

    def figures(self):
        latencies = sorted(self.latencies_ms)
        return {
            "threads": self.threads,
            "accounts": self.accounts,
            "seconds": round(self.elapsed_s, 2),
            "transfers_committed": self.committed,
            "transfers_refused": self.refused,
            "errors": self.errors,
            "transfers_per_s": round(self.committed / self.elapsed_s, 1) if self.elapsed_s else 0.0,
            "latency_ms": {"p50": round(percentile(latencies, 50), 2),
                           "p95": round(percentile(latencies, 95), 2),
                           "p99": round(percentile(latencies, 99), 2)},
        }


def connect(database_url):
    return psycopg2.connect(database_url, application_name="paysys-bench-baseline",
                            options="-c statement_timeout={}".format(STATEMENT_TIMEOUT_MS))


def create_scratch(database_url, schema, accounts, opening_balance_minor=OPENING_BALANCE_MINOR):
    """A fresh scratch schema with ``accounts`` funded rows and an empty entries table."""
    names = {"schema": sql.Identifier(schema)}
    connection = connect(database_url)
    try:
        with connection, connection.cursor() as cursor:
            cursor.execute(sql.SQL("DROP SCHEMA IF EXISTS {schema} CASCADE").format(**names))
            cursor.execute(sql.SQL("CREATE SCHEMA {schema}").format(**names))
            cursor.execute(sql.SQL(
                "CREATE TABLE {schema}.accounts (id integer PRIMARY KEY,"
                " balance bigint NOT NULL CHECK (balance >= 0))").format(**names))
            cursor.execute(sql.SQL(
                "CREATE TABLE {schema}.entries (id bigserial PRIMARY KEY,"
                " account_id integer NOT NULL REFERENCES {schema}.accounts (id),"
                " amount bigint NOT NULL, balance_after bigint NOT NULL,"
                " created_at timestamptz NOT NULL DEFAULT now())").format(**names))
            cursor.execute(sql.SQL(
                "INSERT INTO {schema}.accounts (id, balance)"
                " SELECT n, %s FROM generate_series(1, %s) AS n").format(**names),
                (opening_balance_minor, accounts))
    finally:
        connection.close()


def drop_scratch(database_url, schema):
    connection = connect(database_url)
    try:
        with connection, connection.cursor() as cursor:
            cursor.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                sql.Identifier(schema)))
    finally:
        connection.close()


def transfer_once(connection, schema, source, destination, amount_minor):
    """One transfer in one transaction; False if the CHECK refused the overdraft."""
    names = {"schema": sql.Identifier(schema)}
    update = sql.SQL("UPDATE {schema}.accounts SET balance = balance + %s WHERE id = %s"
                     " RETURNING balance").format(**names)
    deltas = {source: -amount_minor, destination: amount_minor}
    try:
        with connection, connection.cursor() as cursor:
            balances = {}
            for account in sorted(deltas):  # id order: no deadlock between threads
                cursor.execute(update, (deltas[account], account))
                balances[account] = cursor.fetchone()[0]
            cursor.execute(sql.SQL(
                "INSERT INTO {schema}.entries (account_id, amount, balance_after)"
                " VALUES (%s, %s, %s), (%s, %s, %s)").format(**names),
                (source, -amount_minor, balances[source],
                 destination, amount_minor, balances[destination]))
        return True
    except errors.CheckViolation:
        return False  # `with connection` rolled back: nothing moved


def transfer_loop(database_url, schema, threads, seconds, accounts, seed=None):
    """Run ``threads`` transfer loops for ``seconds``; a LoopResult of all of them."""
    result = LoopResult(threads=threads, accounts=accounts)
    lock = threading.Lock()
    connections = [connect(database_url) for _ in range(threads)]
    start = threading.Barrier(threads + 1)
    deadline = []

    def loop(connection, rng):
        committed = refused = 0
        latencies_ms = []
        error = None
        start.wait()
        while time.monotonic() < deadline[0]:
            source, destination = rng.sample(range(1, accounts + 1), 2)
            began_s = time.perf_counter()
            try:
                moved = transfer_once(connection, schema, source, destination,
                                      rng.randint(1, MAX_TRANSFER_MINOR))
            except psycopg2.Error as failure:
                error = "{}: {}".format(type(failure).__name__, str(failure).strip())
                break
            if moved:
                committed += 1
                latencies_ms.append((time.perf_counter() - began_s) * 1000)
            else:
                refused += 1
        with lock:
            if error:
                result.errors.append(error)
            result.committed += committed
            result.refused += refused
            result.latencies_ms.extend(latencies_ms)

    workers = [threading.Thread(target=loop, args=(
        connection, random.Random(None if seed is None else seed + index)), daemon=True)
        for index, connection in enumerate(connections)]
    try:
        for worker in workers:
            worker.start()
        began_s = time.monotonic()
        deadline.append(began_s + seconds)
        start.wait()
        for worker in workers:
            worker.join()
        result.elapsed_s = time.monotonic() - began_s
    finally:
        for connection in connections:
            connection.close()
    return result


def books(database_url, schema):
    """The scratch books: total balance, rows, and accounts whose entries disagree with it."""
    names = {"schema": sql.Identifier(schema)}
    connection = connect(database_url)
    try:
        with connection, connection.cursor() as cursor:
            cursor.execute(sql.SQL("SELECT count(*), sum(balance), min(balance)"
                                   " FROM {schema}.accounts").format(**names))
            accounts, total_minor, lowest_minor = cursor.fetchone()
            cursor.execute(sql.SQL("SELECT count(*), coalesce(sum(amount), 0)"
                                   " FROM {schema}.entries").format(**names))
            entries, entries_sum_minor = cursor.fetchone()
            cursor.execute(sql.SQL(
                "SELECT a.id FROM {schema}.accounts a LEFT JOIN {schema}.entries e"
                " ON e.account_id = a.id GROUP BY a.id, a.balance"
                " HAVING a.balance <> %s + coalesce(sum(e.amount), 0)").format(**names),
                (OPENING_BALANCE_MINOR,))
            disagreeing = [row[0] for row in cursor.fetchall()]
    finally:
        connection.close()
    return {"accounts": accounts, "total_minor": int(total_minor),
            "lowest_minor": int(lowest_minor), "entries": entries,
            "entries_sum_minor": int(entries_sum_minor), "disagreeing_accounts": disagreeing}


def run_baseline(database_url, threads, seconds, schema=SCHEMA, accounts=None, seed=None):
    """Create the scratch schema, run the loop, drop the schema; the figures."""
    # Two accounts per thread, as each benchmark user has two: the same contention.
    accounts = accounts or max(2, 2 * threads)
    create_scratch(database_url, schema, accounts)
    try:
        return transfer_loop(database_url, schema, threads, seconds, accounts, seed).figures()
    finally:
        drop_scratch(database_url, schema)


def main(argv=None):
    from paysys.database import ensure_database
    from shared.config import load_config

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=load_config()["database"]["url"],
                        help="default: config.yml database.url (PAYSYS_DATABASE_URL)")
    parser.add_argument("--threads", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--schema", default=SCHEMA)
    args = parser.parse_args(argv)
    ensure_database(args.database_url)  # as `paysys up` would: the system need not have run
    for name, value in run_baseline(args.database_url, args.threads, args.seconds,
                                    args.schema).items():
        print("  {:<20} {}".format(name, value))


if __name__ == "__main__":
    main()
