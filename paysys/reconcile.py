"""`paysys reconcile`: the ledger's reconciliation, run in this process against the
database and the Kafka mirror that config.yml names (the same logic as the ledger's
``reconciliation()`` RPC: services/ledger/reconciliation.py).

Exit status: 0 balanced, 1 not balanced, 2 could not reconcile (PostgreSQL or Kafka did
not answer).
"""
import json
import sys

BALANCED, NOT_BALANCED, UNAVAILABLE = 0, 1, 2
LISTED = 20  # lines per list in the readable report (--json has the whole report)


def run(config, as_json=False, wait_s=None, out=None, err=None):
    """Reconcile, print the report; the exit status."""
    from sqlalchemy.exc import SQLAlchemyError

    from paysys_mirror import MirrorUnavailable
    from services.ledger.reconciliation import reconcile_with_config
    from shared.db import DatabaseAccess, make_engine
    from shared.errors import ServiceUnavailable

    out = out or sys.stdout
    err = err or sys.stderr
    engine = make_engine(config["database"], 1, "paysys-reconcile")
    try:
        report = reconcile_with_config(DatabaseAccess(engine, "ledger"), config, wait_s=wait_s)
    except MirrorUnavailable as error:
        print("paysys reconcile: the Kafka mirror cannot be read: {}".format(error), file=err)
        return UNAVAILABLE
    except (SQLAlchemyError, ServiceUnavailable) as error:
        print("paysys reconcile: the ledger's database cannot be read: {}".format(
            str(error).strip().splitlines()[0]), file=err)
        return UNAVAILABLE
    finally:
        engine.dispose()
    print(json.dumps(report, indent=2, sort_keys=True) if as_json else readable(report),
          file=out)
    return BALANCED if report["balanced"] else NOT_BALANCED


def readable(report):
    """The report for a person."""
    lines = ["Ledger reconciliation: {}".format(
        "BALANCED" if report["balanced"] else "NOT BALANCED"), ""]
    lines.append("  {:<10} {:>22} {:>22}".format("currency", "entries sum", "balances sum"))
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
    mirror = report["mirror"]
    lines += ["", "Kafka mirror (topic {}): {} ledger postings, {} in Kafka, {} missing, "
              "{} unexpected, {} duplicate messages".format(
                  mirror["topic"], mirror["ledger_postings"], mirror["kafka_postings"],
                  mirror["missing_count"], mirror["unexpected_count"], mirror["duplicates"])]
    if mirror["unpublished"]:
        lines.append("  {} of the ledger's messages were not yet published by its relay when "
                     "Kafka was read (is the ledger running?)".format(mirror["unpublished"]))
    for name in ("missing", "unexpected"):
        for posting in mirror[name][:LISTED]:
            lines.append("  {} {}".format(name, posting))
        if mirror[name + "_count"] > LISTED:
            lines.append("  … and {} more {} (--json lists up to {})".format(
                mirror[name + "_count"] - LISTED, name, len(mirror[name])))
    return "\n".join(lines)


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
