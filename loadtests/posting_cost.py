"""What the ledger's posting path costs, timed on its own against real PostgreSQL: the
CPU this process spends per posted transfer (it plays the ledger process: the same
``services.ledger.batches.post`` on a pooled, cooperative engine, ``--workers``
greenthreads at once as the ledger's workers would be), the wall-clock throughput, and —
when the code has a hash chain — the time batches spent taking a lane of it, and how
many found every lane busy and waited.

    python -m loadtests.posting_cost --database-url postgresql://postgres@127.0.0.1/x

Run it with another checkout first on PYTHONPATH to time that code instead (its
migrations make the database): docs/integrity.md compares the ledger before and after
its hash chain this way. The database is dropped at the end.
"""
import shared  # noqa: F401,I001 - silences eventlet's deprecation notice first
import eventlet

eventlet.monkey_patch()

import argparse  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import resource  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from datetime import timedelta  # noqa: E402


def cpu_s():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class _Counting:
    """A connection that counts the statements ``counted`` it runs."""

    def __init__(self, connection, counted, clock):
        self._connection, self._counted, self._clock = connection, counted, clock

    def execute(self, statement, *args, **kwargs):
        if statement is self._counted:
            self._clock.waits += 1
        return self._connection.execute(statement, *args, **kwargs)


class LaneClock:
    """Wall time spent in ``chain.take_lane`` (the statement that writes the balances and
    takes a free lane, and the wait for a busy one when none is free), and how many
    batches found every lane busy; when the code under test has a hash chain."""

    def __init__(self):
        self.seconds, self.calls, self.waits = 0.0, 0, 0
        try:
            from services.ledger import chain
        except ImportError:
            self.present = False
            return
        self.present = True
        original = chain.take_lane

        def timed(connection, pick, books=()):
            started = time.monotonic()
            try:
                return original(_Counting(connection, chain._WAIT_FOR_LANE, self), pick,
                                books)
            finally:
                self.seconds += time.monotonic() - started
                self.calls += 1

        chain.take_lane = timed


def read_costs(engine, db):
    """What the reads of docs/integrity.md cost on the books just posted: verifying the
    whole hash chain (as reconciliation does, in one snapshot), and the balance at a
    moment before the busiest account's first entry (the longest walk back)."""
    from sqlalchemy import text

    from services.ledger import chain_check, entries

    with engine.connect() as connection:
        connection.execution_options(isolation_level="REPEATABLE READ",
                                     postgresql_readonly=True)
        with connection.begin():
            started = time.monotonic()
            report = chain_check.verify(connection)
            verify_s = time.monotonic() - started
    assert report["valid"], report
    with db.connection() as connection:
        busiest, count, first = connection.execute(text(
            "SELECT account_id, count(*), min(created_at) FROM ledger.entries "
            "GROUP BY account_id ORDER BY 2 DESC LIMIT 1")).one()
        started = time.monotonic()
        assert entries.balance_at(connection, busiest, first - timedelta(seconds=1)) == 0
        walk_s = time.monotonic() - started
    return {"verified_postings": report["postings_checked"],
            "verify_s": round(verify_s, 3),
            "verify_postings_per_s": round(report["postings_checked"] / verify_s),
            "balance_at_walk_entries": count, "balance_at_walk_ms": round(walk_s * 1000, 2)}


def run(arguments):
    from sqlalchemy import text

    from harness.servers import drop_database
    from paysys.database import ensure_database, migrate
    from services.ledger import accounts, batches
    from shared.config import load_config
    from shared.db import DatabaseAccess, make_engine
    from shared.money import settlement_account_id

    url = arguments.database_url
    admin = url.rsplit("/", 1)[0] + "/postgres"
    name = url.rsplit("/", 1)[1]
    drop_database(admin, name)
    ensure_database(url)
    migrate(url, report=lambda line: None)
    config = load_config()
    config["database"]["url"] = url
    engine = make_engine(config["database"], arguments.workers, "paysys-posting-cost")
    clock = LaneClock()
    try:
        db = DatabaseAccess(engine, "ledger")
        with db.transaction() as connection:
            ids = [accounts.insert_account(connection, str(uuid.uuid4()), "USD").id
                   for _ in range(arguments.accounts)]
        funding = [{"transaction_id": str(uuid.uuid4()), "type": "deposit", "currency": "USD",
                    "amount": 10 ** 12, "debit_account_id": settlement_account_id("USD"),
                    "credit_account_id": account} for account in ids]
        batches.post(db, funding)
        rng = random.Random(arguments.seed)

        def batch():
            postings = []
            for _ in range(arguments.batch_size):
                debit, credit = rng.sample(ids, 2)
                postings.append({"transaction_id": str(uuid.uuid4()), "type": "transfer",
                                 "currency": "USD", "amount": rng.randint(1, 1000),
                                 "debit_account_id": debit, "credit_account_id": credit})
            return postings

        per_worker = arguments.transfers // arguments.batch_size // arguments.workers
        work = [[batch() for _ in range(per_worker)] for _ in range(arguments.workers)]

        def worker(mine):
            posted = 0
            for given in mine:
                posted += sum(result["status"] == "posted"
                              for result in batches.post(db, given))
            return posted

        cpu_before, wall_before = cpu_s(), time.monotonic()
        threads = [eventlet.spawn(worker, mine) for mine in work]
        posted = sum(thread.wait() for thread in threads)
        wall_s, cpu_used_s = time.monotonic() - wall_before, cpu_s() - cpu_before
        if arguments.verify and clock.present:
            figures_of_reads = read_costs(engine, db)
        else:
            figures_of_reads = {}
        lanes_used = None
        if clock.present:
            with db.connection() as connection:
                lanes_used = connection.execute(text(
                    "SELECT count(*) FROM ledger.chain_heads WHERE seq > 0")).scalar_one()
    finally:
        engine.dispose()
        drop_database(admin, name)
    figures = {
        "chain": clock.present, "workers": arguments.workers,
        "batch_size": arguments.batch_size, "transfers": posted,
        "cpu_us_per_transfer": round(cpu_used_s / posted * 1e6, 1),
        "transfers_per_s": round(posted / wall_s, 1),
    }
    figures.update(figures_of_reads)
    if clock.present:
        figures["take_lane_ms_per_batch"] = round(clock.seconds / clock.calls * 1000, 3)
        figures["batches_that_waited_for_a_lane"] = clock.waits
        figures["lanes_used"] = lanes_used
    return figures


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", required=True,
                        help="a database to create, use and drop (its name is dropped first)")
    parser.add_argument("--transfers", type=int, default=4000)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--workers", type=int, default=10,
                        help="concurrent batches (the ledger's max_workers; default 10)")
    parser.add_argument("--accounts", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--verify", action="store_true",
                        help="then time the reads of the books: the hash chain verified, "
                        "and the longest walk back of a balance at a moment")
    print(json.dumps(run(parser.parse_args(argv))))


if __name__ == "__main__":
    main()
