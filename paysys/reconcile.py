"""`paysys reconcile`: the ledger's reconciliation, run in this process against the
database and the Kafka mirror that config.yml names (the steps of the ledger's
``reconciliation()`` RPC, services/ledger/reconciliation.py), with a longer wait that
tells a mirror still catching up from a broken one.

One snapshot of the books; then, while the relay still has postings of that snapshot to
publish, a watch (paysys/catch_up.py) of up to ``--wait`` seconds that goes on while the
relay advances and prints its progress; then the whole topic is read and compared.

Exit status (EXIT_STATUSES, printed by `paysys reconcile --help`)."""
import json
import sys

BALANCED, BROKEN, UNAVAILABLE, CATCHING_UP = 0, 1, 2, 3
NOT_BALANCED = BROKEN
VERDICTS = {BALANCED: "balanced", BROKEN: "broken", UNAVAILABLE: "unavailable",
            CATCHING_UP: "catching up"}
EXIT_STATUSES = """exit status:
  0  balanced: every currency sums to zero, every balance equals its entries, the
     hash chain holds, and the Kafka mirror holds every posting of the snapshot and
     nothing the ledger lacks
  1  broken: the books do not balance, or the hash chain is broken; or the mirror
     differs from the ledger (a posting the relay has published is missing, or it
     holds one the ledger lacks); or the relay stopped advancing (published nothing for --stall seconds)
  2  could not reconcile: PostgreSQL or Kafka did not answer
  3  still catching up: the books balance and the mirror lacks only postings the relay
     had not yet published, while it was still publishing when --wait ran out: run
     again, or with a longer --wait"""
LISTED = 20  # lines per list in the readable report (--json has the whole report)


def run(config, as_json=False, wait_s=None, stall_s=None, out=None, err=None):
    """Reconcile, print the report (progress on ``err``); the exit status."""
    from sqlalchemy.exc import SQLAlchemyError

    from paysys import catch_up
    from paysys_mirror import MirrorUnavailable
    from services.ledger import reconciliation
    from shared.db import DatabaseAccess, make_engine
    from shared.errors import ServiceUnavailable

    out = out or sys.stdout
    err = err or sys.stderr
    from services.ledger.settings import LedgerSettings
    from shared.settings import load
    from shared.shared_settings import SharedSettings

    ledger = load(LedgerSettings, config).ledger
    if wait_s is None:
        wait_s = ledger.reconcile_catch_up_s
    if stall_s is None:
        stall_s = ledger.reconcile_stall_s

    def say(line):
        print(line, file=err, flush=True)

    engine = make_engine(load(SharedSettings, config).database, 1, "paysys-reconcile")
    db = DatabaseAccess(engine, "ledger")
    books = None
    try:
        books = reconciliation.snapshot(db)
        say("Books: {} accounts, {} ledger postings in the snapshot".format(
            books.report["accounts_checked"], books.postings))

        def unpublished():
            return reconciliation.unpublished_count(db, books.newest_outbox_id)

        seen = catch_up.watch(unpublished, wait_s, stall_s, say)
        unpublished_at_read = unpublished()
        say("Reading topic {} …".format(load(SharedSettings, config).kafka.ledger_topic))
        mirror = reconciliation.mirror_reader(config)()
        report = reconciliation.compare(db, books, mirror, unpublished_at_read)
    except MirrorUnavailable as error:
        return _unavailable("the Kafka mirror cannot be read: {}".format(error), books,
                            as_json, out, err)
    except (SQLAlchemyError, ServiceUnavailable) as error:
        return _unavailable("the ledger's database cannot be read: {}".format(
            str(error).strip().splitlines()[0]), books, as_json, out, err)
    finally:
        engine.dispose()
    status, reason = judge(report, seen, stall_s)
    if as_json:
        print(json.dumps(dict(report, verdict=VERDICTS[status], reason=reason,
                              relay=seen.as_dict(), offsets=mirror.offsets),
                         indent=2, sort_keys=True), file=out)
    else:
        print(readable(report, status, reason, seen, mirror.offsets), file=out)
    return status


def judge(report, seen, stall_s):
    """``(exit status, why)`` of a report and what the watch of the relay saw."""
    from paysys.catch_up import STALLED
    from services.ledger.reconciliation import books_balance

    mirror = report["mirror"]
    if report["balanced"]:
        return BALANCED, "the books balance and the mirror equals the ledger"
    chain = report["chain"]
    if not chain["valid"]:
        broken = chain["first_broken"]
        if broken is None:
            return BROKEN, "the hash chain is broken: {} entries belong to no posting".format(
                chain["entries_outside_chain"])
        return BROKEN, "the hash chain is broken: first at lane {} posting #{} ({})".format(
            broken["lane"], broken["seq"], broken["reason"])
    if not books_balance(report):
        wrong = sorted(currency for currency, sums in report["currencies"].items()
                       if sums["entries_sum"] or sums["accounts_sum"])
        return BROKEN, "the books do not balance: {} balances differ from their entries{}".format(
            len(report["discrepancies"]),
            "; not zero: " + ", ".join(wrong) if wrong else "")
    if mirror["unexpected_count"]:
        return BROKEN, "the mirror holds {} postings the ledger does not have (first: {})".format(
            mirror["unexpected_count"], mirror["unexpected"][0])
    missing, unpublished = mirror["missing_count"], mirror["unpublished"]
    if seen.state == STALLED:
        return BROKEN, ("the relay stopped advancing: {} postings of the snapshot unpublished, "
                        "none published for {:g} s; {} missing from the mirror (first: {})"
                        .format(unpublished, min(stall_s, seen.waited_s), missing,
                                mirror["missing"][0]))
    if missing <= unpublished:
        return CATCHING_UP, ("the mirror is catching up: the relay still had {} postings of "
                             "the snapshot to publish after {:g} s ({} at the start); run "
                             "again, or with a longer --wait".format(
                                 unpublished, round(seen.waited_s, 1),
                                 seen.unpublished_at_start))
    return BROKEN, ("{} postings the relay has published are missing from the mirror "
                    "(first: {})".format(missing - unpublished, mirror["missing"][0]))


def _unavailable(why, books, as_json, out, err):
    print("paysys reconcile: {}".format(why), file=err)
    if books is not None:  # what was compared before it stopped: the books
        if as_json:
            print(json.dumps(dict(books.report, balanced=False, verdict=VERDICTS[UNAVAILABLE],
                                  reason=why), indent=2, sort_keys=True), file=out)
        else:
            print("\n".join(["Ledger reconciliation: NOT DONE ({})".format(why), ""]
                            + books_lines(books.report)
                            + ["", "Verdict: could not reconcile (exit 2): {}".format(why)]),
                  file=out)
    return UNAVAILABLE


HEADINGS = {BALANCED: "BALANCED", BROKEN: "NOT BALANCED (broken)",
            CATCHING_UP: "NOT BALANCED YET (the Kafka mirror is catching up)"}


def readable(report, status=None, reason=None, seen=None, offsets=None):
    """The report for a person: the verdict, then everything compared."""
    if status is None:
        status = BALANCED if report["balanced"] else BROKEN
    lines = ["Ledger reconciliation: {}".format(HEADINGS[status]), ""]
    lines += books_lines(report)
    mirror = report["mirror"]
    lines += ["", "Kafka mirror (topic {}): {} ledger postings, {} in Kafka, {} missing, "
              "{} unexpected, {} duplicate messages".format(
                  mirror["topic"], mirror["ledger_postings"], mirror["kafka_postings"],
                  mirror["missing_count"], mirror["unexpected_count"], mirror["duplicates"])]
    if offsets:
        lines.append("  read to offsets (partition: offset) {}".format(", ".join(
            "{}: {}".format(partition, offset) for partition, offset in sorted(offsets.items()))))
    if seen is not None and seen.unpublished_at_start:
        lines.append("  the relay: {} postings of the snapshot to publish at the start, {} after "
                     "{:g} s ({})".format(seen.unpublished_at_start, seen.unpublished,
                                          round(seen.waited_s, 1), seen.state))
    if mirror["unpublished"]:
        lines.append("  {} of the ledger's messages were not yet published by its relay when "
                     "Kafka was read (is the ledger running?)".format(mirror["unpublished"]))
    for name in ("missing", "unexpected"):
        for posting in mirror[name][:LISTED]:
            lines.append("  {} {}".format(name, posting))
        if mirror[name + "_count"] > LISTED:
            lines.append("  … and {} more {} (--json lists up to {})".format(
                mirror[name + "_count"] - LISTED, name, len(mirror[name])))
    if reason:
        lines += ["", "Verdict: {} (exit {}): {}".format(VERDICTS[status], status, reason)]
    return "\n".join(lines)


def books_lines(report):
    """The books part of the report: sums per currency, balances against entries."""
    lines = ["  {:<10} {:>22} {:>22}".format("currency", "entries sum", "balances sum")]
    for currency, sums in sorted(report["currencies"].items()):
        good = sums["entries_sum"] == 0 and sums["accounts_sum"] == 0
        lines.append("  {:<10} {:>22} {:>22}  {}".format(
            currency, sums["entries_sum"], sums["accounts_sum"], "ok" if good else "NOT ZERO"))
    if not report["currencies"]:
        lines.append("  (no money has moved yet)")
    discrepancies = report["discrepancies"]
    lines += ["", "Accounts checked: {}; balances that differ from their entries: {}".format(
        report["accounts_checked"], len(discrepancies))]
    for found in discrepancies[:LISTED]:
        lines.append("  {account_id}: balance {balance}, entries sum {entries_sum}".format(
            **found))
    lines += [""] + chain_lines(report["chain"])
    return lines


def chain_lines(chain):
    """The hash chain's part of the readable report: intact, or its first broken link."""
    lines = ["Hash chain: {} ({} postings, {} entries checked in {} lanes)".format(
        "INTACT" if chain["valid"] else "BROKEN", chain["postings_checked"],
        chain["entries_checked"], len(chain["heads"]))]
    broken = chain["first_broken"]
    if broken is not None:
        lines.append("  first broken link: lane {} posting #{} (transaction {}): {}: {}".format(
            broken["lane"], broken["seq"], broken["transaction_id"] or "-", broken["reason"],
            broken["detail"]))
        lines.append("  broken links: {}".format(chain["broken_links"]))
    if chain["entries_outside_chain"]:
        lines.append("  {} entries belong to no posting of the chain".format(
            chain["entries_outside_chain"]))
    return lines
