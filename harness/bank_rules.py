"""The bank checker's rules: pure functions of a bank run's ``History`` (harness/bank.py)
and the ``Books`` read after it (harness/bank_checker.py), each a list of problems naming
the rule and what broke it (empty: the books are right). The reconciliation report's rule
is here too.
"""


def judge(history, books):
    """Every rule over the run and the books; a list of problems, each naming its rule and
    what broke it (empty: the books are right)."""
    problems = []
    if books.pending:
        problems.append("{} transactions still pending: {}".format(
            len(books.pending), [tx["id"] for tx in books.pending[:5]]))
    problems.extend(check_accounts(books))
    total = sum(account["balance"] for account in books.accounts.values())
    if total != history.deposited:
        problems.append("money not conserved: {} deposited, {} in the accounts".format(
            history.deposited, total))
    problems.extend(check_unknown(history.operations, books.transactions))
    problems.extend(check_payments(history.payments, books))
    problems.extend(check_transfers(history.operations, books))
    return problems


def check_accounts(books):
    """No balance below zero; each account's entries sum to its balance."""
    problems = []
    for account_id, account in books.accounts.items():
        if account["balance"] < 0:
            problems.append("account {} is negative: {}".format(account_id, account["balance"]))
        entries_sum = sum(entry["amount"] for entry in books.entries.get(account_id, []))
        if entries_sum != account["balance"]:
            problems.append("account {}: entries sum to {}, balance is {}".format(
                account_id, entries_sum, account["balance"]))
    return problems


def check_transfers(operations, books):
    """Each answered transfer: in the list; acknowledged completed still completed; a
    completed one posted exactly once (one debit, one credit of its amount); a failed one
    moved nothing; a replay answered the same transaction."""
    problems = []
    entries_by_transaction = books.entries_by_transaction
    for operation in operations:
        if operation.transaction is None:
            continue
        transaction = books.transactions.get(operation.transaction["id"])
        entries = entries_by_transaction.get(operation.transaction["id"], [])
        if transaction is None:
            problems.append("transaction {} missing from the list".format(
                operation.transaction["id"]))
            continue
        if operation.outcome == "ok" and transaction["status"] != "completed":
            problems.append("acknowledged {} is now {}".format(transaction["id"],
                                                               transaction["status"]))
        if transaction["status"] == "completed":
            amounts = sorted(entry["amount"] for entry in entries)
            if amounts != [-operation.amount, operation.amount]:
                problems.append("completed {} posted as {}".format(transaction["id"], amounts))
        elif entries:
            problems.append("{} {} moved money: {}".format(
                transaction["status"], transaction["id"], entries))
        if operation.replayed_same is False:
            problems.append("replay of {} answered another transaction".format(operation.key))
    return problems


def check_payments(payments, books):
    """Every payment is decided (none left pending); an acknowledged capture shows as
    captured with its amount, posted once; and the money each account holds
    (``balance - available_balance``) is exactly its payments still authorized, plus
    some of those whose authorization got no answer."""
    problems = []
    held_for = {}
    entries_by_transaction = books.entries_by_transaction
    for payment in payments:
        if payment.payment_id is None:
            continue
        if payment.payment_id in books.payment_errors:
            problems.append("payment {} answers {}".format(
                payment.payment_id, books.payment_errors[payment.payment_id]))
            continue
        seen = books.payments[payment.payment_id]
        if seen["status"] == "authorized":
            held_for[payment.source] = held_for.get(payment.source, 0) + seen["amount"]
        if payment.captured == "ok" and (seen["status"], seen["captured_amount"]) != (
                "captured", payment.capture_amount):
            problems.append("acknowledged capture of {} is now {} {}".format(
                payment.payment_id, seen["status"], seen["captured_amount"]))
        if seen["status"] == "captured":
            # One capture moved the money (a refused attempt before it moved nothing).
            posted = [sorted(entry["amount"] for entry in entries_by_transaction[t])
                      for t in seen["transactions"][1:] if entries_by_transaction.get(t)]
            captured = seen["captured_amount"]
            if posted != [[-captured, captured]]:
                problems.append("capture of {} posted as {}".format(payment.payment_id,
                                                                    posted))
    # An authorization that got no answer may hold money too (until its hold time ends).
    unanswered = {}
    for payment in payments:
        if payment.payment_id is None and payment.authorized == "unknown":
            unanswered.setdefault(payment.source, []).append(payment.amount)
    for account_id, account in books.accounts.items():
        extra = account["balance"] - account["available_balance"] - held_for.get(account_id, 0)
        if extra not in subset_sums(unanswered.get(account_id, [])):
            problems.append("account {} holds {} more than its open authorizations {}, "
                            "which no unanswered ones {} add up to".format(
                                account_id, extra, held_for.get(account_id, 0),
                                unanswered.get(account_id, [])))
    return problems


def subset_sums(amounts):
    sums = {0}
    for amount in amounts:
        sums |= {total + amount for total in sums}
    return sums


def check_unknown(operations, final):
    """Operations without an answer either made their one transaction or none: every
    transfer in the books must belong to an answered operation, or else to one unanswered
    operation of the same accounts and amount (each such operation at most once)."""
    problems = []
    claimed = {op.transaction["id"] for op in operations if op.transaction is not None}
    unanswered = {}
    for op in operations:
        if op.transaction is None:
            unanswered.setdefault((op.source, op.destination, op.amount), []).append(op)
    for transaction in final.values():
        if transaction["type"] != "transfer" or transaction["id"] in claimed:
            continue
        candidates = unanswered.get((transaction["source_account_id"],
                                     transaction["destination_account_id"],
                                     transaction["amount"]))
        if candidates:
            candidates.pop()  # that unanswered operation made this transaction
        else:
            problems.append("transfer {} was made by no operation of the run".format(
                transaction["id"]))
    return problems


def check_reconciliation(report):
    """The reconciliation report (GET /v1/ledger/reconciliation) judged: each currency's
    entries and accounts sum to zero, each account's entries to its balance, and the Kafka
    mirror holds exactly the ledger's postings (a gap is a posting it is missing)."""
    problems = []
    for currency, sums in sorted(report["currencies"].items()):
        if sums["entries_sum"] != 0 or sums["accounts_sum"] != 0:
            problems.append("{} does not sum to zero: entries {}, accounts {}".format(
                currency, sums["entries_sum"], sums["accounts_sum"]))
    for found in report["discrepancies"]:
        problems.append("ledger account {}: entries sum to {}, balance is {}".format(
            found["account_id"], found["entries_sum"], found["balance"]))
    mirror = report["mirror"]
    if mirror["missing_count"]:
        problems.append("the Kafka mirror is missing {} postings: {}".format(
            mirror["missing_count"], mirror["missing"][:5]))
    if mirror["unexpected_count"]:
        problems.append("the Kafka mirror has {} postings the ledger does not: {}".format(
            mirror["unexpected_count"], mirror["unexpected"][:5]))
    if not problems and not report["balanced"]:
        problems.append("reconciliation not balanced: {}".format(str(report)[:1000]))
    return problems
