"""Reconciliation: the books checked against themselves (totals.py), their hash chain
verified (chain_check.py) and the Kafka mirror checked against the books.

The report (API.md, GET /v1/ledger/reconciliation; the ledger's ``reconciliation()`` RPC
and ``paysys reconcile``)::

    {"balanced": bool,
     "currencies": {CUR: {"entries_sum", "accounts_sum"}},
     "accounts_checked": int,
     "discrepancies": [{"account_id", "balance", "entries_sum"}],
     "chain": {"valid", "postings_checked", "entries_checked", "head": {"seq", "hash"},
               "first_broken": null | {"seq", "transaction_id", "reason", "detail"},
               "broken_links", "entries_outside_chain"},
     "mirror": {"topic", "ledger_postings", "kafka_postings",
                "missing": ["<account_id>:<account_seq>", ...], "missing_count",
                "unexpected": [...], "unexpected_count", "duplicates", "unpublished"}}

* ``ledger_postings``: the ledger's entries (one mirror message each) in the snapshot;
  ``kafka_postings``: the different ``(account_id, account_seq)`` read from the topic (it
  may include entries posted after the snapshot);
* ``missing``: entries of the snapshot the topic does not hold, as
  ``account_id:account_seq``, the first ``MAX_LISTED`` (``missing_count`` counts all);
* ``unexpected``: messages naming an entry the ledger does not have, even after the read;
* ``duplicates``: messages repeating one read before (replays: harmless, consumers skip
  them); ``unpublished``: outbox rows of the snapshot the relay had not yet published
  when the topic was read (their entries are then missing too).

``balanced``: every currency's entries and balances sum to zero, no balance differs from
its entries, the hash chain is intact, nothing is missing and nothing unexpected.

Order of the work: one REPEATABLE READ snapshot of the books; then up to ``wait_s`` for
the relay to publish every outbox row of that snapshot (so a reconciliation right after
a burst of transfers is not spoiled by the relay's half second); then the whole topic is
read. When Kafka does not answer, the reconciliation fails (MirrorUnavailable, which the
RPC turns into ServiceUnavailable, a 503 with Retry-After) rather than report every
posting missing: that would be a claim about the mirror nobody could make.
``reconcile`` is ``snapshot``, ``wait_for_relay`` and ``compare`` in a row; `paysys
reconcile` (paysys/reconcile.py) runs the same steps with its own, longer wait that
tells a relay still catching up from one that stopped.

Cost: the ledger side is one aggregate per account and one pass along the hash chain
(docs/integrity.md gives its speed); the mirror side holds every
``(account_id, account_seq)`` of the topic in memory, and the read is as long as the
topic. Fine for the ledgers this system runs; a very long history wants a
per-account-range comparison instead.
"""
import time
from dataclasses import dataclass

from sqlalchemy import BigInteger, bindparam, func, select, text
from sqlalchemy.dialects.postgresql import ARRAY, UUID

from paysys_mirror import MirrorUnavailable, probe, read_mirror
from services.ledger import chain_check
from services.ledger import totals as ledger_totals
from services.ledger.entries import entries
from services.ledger.outbox import outbox
from services.ledger.settings import LedgerSettings
from shared.ids import parse_id
from shared.settings import load
from shared.shared_settings import SharedSettings

MAX_LISTED = 100
_CHUNK = 10_000

_NOT_IN_LEDGER = text("""
    SELECT given.account_id, given.seq
    FROM unnest(:accounts, :seqs) AS given(account_id, seq)
    WHERE NOT EXISTS (SELECT 1 FROM ledger.entries e
                      WHERE e.account_id = given.account_id AND e.account_seq = given.seq)
    ORDER BY 1, 2
""").bindparams(
    bindparam("accounts", type_=ARRAY(UUID(as_uuid=False))),
    bindparam("seqs", type_=ARRAY(BigInteger)),
).columns(account_id=UUID(as_uuid=False), seq=BigInteger)


def mirror_reader(config, timeout_s=None):
    """``read()`` of the topic config.yml names: a MirrorContents, or MirrorUnavailable
    (at once when nothing listens at the address, rather than after the client's
    bootstrap timeout)."""
    kafka = load(SharedSettings, config).kafka
    servers = kafka.servers
    timeout_ms = kafka.request_timeout_ms
    if timeout_s is None:
        timeout_s = load(LedgerSettings, config).ledger.mirror_read_timeout_s

    def read():
        if not probe(servers, timeout_ms / 1000):
            raise MirrorUnavailable("nothing listens at {}".format(servers))
        return read_mirror(servers, kafka.ledger_topic, timeout_s=timeout_s,
                           request_timeout_ms=timeout_ms)

    return read


def reconcile_with_config(db, config, wait_s=None):
    """The report for ``db`` (a DatabaseAccess of the ledger) and config.yml's Kafka
    (``config``: config.yml as a dict, read through the settings models)."""
    if wait_s is None:
        wait_s = load(LedgerSettings, config).ledger.reconcile_wait_s
    return reconcile(db, mirror_reader(config), wait_s=wait_s)


def reconcile(db, read, wait_s=2.0, poll_s=0.1):
    """The report (module docstring). ``read()`` returns the topic's MirrorContents."""
    books = snapshot(db)
    unpublished = wait_for_relay(db, books.newest_outbox_id, wait_s, poll_s)
    return compare(db, books, read(), unpublished)


@dataclass
class Books:
    """One snapshot of the books: the totals part of the report, every account's
    sequence numbers, and the newest outbox row (what the mirror should hold)."""

    report: dict
    ledger: dict
    newest_outbox_id: int = None

    @property
    def postings(self):
        return sum(len(expected) for expected in self.ledger.values())


def snapshot(db):
    """The Books, in one REPEATABLE READ snapshot."""
    with db.connection() as connection:
        connection.execution_options(isolation_level="REPEATABLE READ",
                                     postgresql_readonly=True)
        with connection.begin():
            report = ledger_totals.totals(connection)
            report["chain"] = chain_check.verify(connection)
            ledger = ledger_postings(connection)
            newest = connection.execute(select(func.max(outbox.c.id))).scalar()
    return Books(report, ledger, newest)


def compare(db, books, mirror, unpublished):
    """The report: ``books`` (a snapshot) against ``mirror`` (the topic's MirrorContents,
    read after it); ``unpublished``: the snapshot's outbox rows not yet published when the
    topic was read."""
    ledger = books.ledger
    report = dict(books.report)
    missing, missing_count = [], 0
    for account in sorted(ledger):
        expected = ledger[account]
        seen = mirror.postings.get(account, set())
        if len(expected) == sum(1 for seq in seen if seq in expected):
            continue
        for seq in expected:
            if seq not in seen:
                missing_count += 1
                if len(missing) < MAX_LISTED:
                    missing.append("{}:{}".format(account, seq))

    beyond = sorted(
        (account, seq) for account, seqs in mirror.postings.items()
        for seq in seqs if seq not in ledger.get(account, ()))
    unexpected = not_in_ledger(db, beyond)

    report["mirror"] = {
        "topic": mirror.topic,
        "ledger_postings": books.postings,
        "kafka_postings": mirror.distinct,
        "missing": missing,
        "missing_count": missing_count,
        "unexpected": ["{}:{}".format(account, seq) for account, seq in unexpected[:MAX_LISTED]],
        "unexpected_count": len(unexpected),
        "duplicates": mirror.duplicates,
        "unpublished": unpublished,
    }
    report["balanced"] = (
        books_balance(report) and missing_count == 0 and not unexpected)
    return {key: report[key] for key in (
        "balanced", "currencies", "accounts_checked", "discrepancies", "chain", "mirror")}


def books_balance(report):
    """Does every currency sum to zero, every balance equal its entries, and the hash
    chain hold?"""
    return (all(sums["entries_sum"] == 0 and sums["accounts_sum"] == 0
                for sums in report["currencies"].values())
            and not report["discrepancies"] and report["chain"]["valid"])


class _Range:
    """``range(1, n + 1)`` with the set operations used above."""

    def __init__(self, highest):
        self.highest = highest

    def __contains__(self, seq):
        return 1 <= seq <= self.highest

    def __len__(self):
        return self.highest

    def __iter__(self):
        return iter(range(1, self.highest + 1))


def ledger_postings(connection):
    """``{account_id: its account_seqs}``. An account whose entries number as many as its
    highest sequence number has exactly 1…n (the numbers are unique and positive), kept
    as a range; any other one has its numbers listed."""
    found, irregular = {}, []
    for account, count, highest in connection.execute(
        select(entries.c.account_id, func.count(), func.max(entries.c.account_seq))
        .group_by(entries.c.account_id)
    ):
        if count == highest:
            found[account] = _Range(highest)
        else:
            irregular.append(account)
    for start in range(0, len(irregular), _CHUNK):
        for account, seq in connection.execute(
            select(entries.c.account_id, entries.c.account_seq)
            .where(entries.c.account_id.in_(irregular[start:start + _CHUNK]))
        ):
            found.setdefault(account, set()).add(seq)
    return found


def wait_for_relay(db, newest_id, wait_s, poll_s):
    """Wait up to ``wait_s`` until every outbox row up to ``newest_id`` is published;
    how many still are not."""
    deadline = time.monotonic() + wait_s
    while True:
        waiting = unpublished_count(db, newest_id)
        if waiting == 0 or time.monotonic() >= deadline:
            return waiting
        time.sleep(poll_s)


def unpublished_count(db, newest_id):
    """Outbox rows up to ``newest_id`` (a snapshot's newest) the relay has not published
    (a replay unpublishes rows again, so this can grow)."""
    if newest_id is None:
        return 0
    with db.connection() as connection:
        return connection.execute(
            select(func.count()).select_from(outbox)
            .where(outbox.c.published_at.is_(None), outbox.c.id <= newest_id)
        ).scalar_one()


def not_in_ledger(db, postings):
    """Those of ``postings`` (sorted ``(account_id, seq)``) the ledger has no entry for."""
    absent = [(account, seq) for account, seq in postings if parse_id(account) != account]
    known = [(account, seq) for account, seq in postings if parse_id(account) == account]
    with db.connection() as connection:
        for start in range(0, len(known), _CHUNK):
            chunk = known[start:start + _CHUNK]
            absent.extend(connection.execute(_NOT_IN_LEDGER, {
                "accounts": [account for account, _ in chunk],
                "seqs": [seq for _, seq in chunk],
            }).all())
    return sorted((account, seq) for account, seq in absent)
