"""The posting rules, over the books as they are under the row locks: plain Python, no
database, so every rule is tested with plain values (tests/unit/test_ledger_rules.py).

A batch applies its postings one after another to ``Book`` objects (one per account,
read under the lock by batches.py). A posting that passes every check changes its books
and answers what it did; one that fails changes nothing and answers why. batches.py
then writes what changed with a few set-based statements.
"""
from dataclasses import dataclass, field

from shared.money import available_balance

# Why a posting is refused (the transactions service reports it as the failure_reason).
INSUFFICIENT_FUNDS = "insufficient_funds"
CURRENCY_MISMATCH = "currency_mismatch"
MALFORMED = "malformed_posting"
ACCOUNT_NOT_FOUND = "account_not_found"
ACCOUNT_FROZEN = "account_frozen"
ACCOUNT_CHANGED = "account_changed"
HOLD_NOT_FOUND = "hold_not_found"
HOLD_NOT_ACTIVE = "hold_not_active"
AMOUNT_EXCEEDS_HOLD = "amount_exceeds_hold"
# An atomic batch where another posting was refused: this one moved nothing either.
BATCH_ABORTED = "batch_aborted"

# PostgreSQL bigint: a balance beyond it cannot be stored, so the posting is refused.
BIGINT_MAX = 2**63 - 1
ACTIVE = "active"
HELD, CAPTURED = "held", "captured"


@dataclass
class Book:
    """One account during a batch: its money (the locked balances row) and its state (the
    accounts row; a settlement account has no state and is always open)."""

    account_id: str
    currency: str
    is_settlement: bool
    balance: int
    held: int
    last_seq: int
    # The limit the balances row's CHECK constraint holds it to: the account's limit as
    # the latest debit saw it (the database's own guard behind the rules here).
    row_limit: int
    known: bool = True  # False: a balances row without an account (an id nobody opened)
    status: str = ACTIVE
    version: int = None
    overdraft_limit: int = 0
    changed: bool = False

    @property
    def available(self):
        return available_balance(self.balance, self.held, self.overdraft_limit)


@dataclass
class HoldBook:
    """One authorization hold during a batch."""

    transaction_id: str
    account_id: str
    currency: str
    amount: int
    status: str = HELD
    settled_by: str = None
    new: bool = False  # placed by this batch
    settled: bool = False  # captured by this batch


@dataclass
class Line:
    """One entry a posting makes: ``amount`` signed, the account's balance and sequence
    number after it."""

    account_id: str
    amount: int
    balance_after: int
    account_seq: int


@dataclass
class Outcome:
    """What one posting did: ``lines`` of a move, ``hold`` of a hold, or ``reason``."""

    lines: list = field(default_factory=list)
    hold: HoldBook = None
    reason: str = None

    @property
    def refused(self):
        return self.reason is not None


def refusal(posting, books):
    """Why the posting's accounts refuse it as they stand (None: they do not): existence,
    currency, state, and the version the validators judged (optimistic locking)."""
    for account_id in posting.accounts:
        book = books.get(account_id)
        if book is None or not (book.known or book.is_settlement):
            return ACCOUNT_NOT_FOUND
    for account_id in posting.accounts:
        if books[account_id].currency != posting.currency:
            return CURRENCY_MISMATCH
    for account_id in posting.accounts:
        if books[account_id].status != ACTIVE:
            return ACCOUNT_FROZEN
    for account_id, version in posting.expected_versions.items():
        if account_id in books and books[account_id].version != version:
            return ACCOUNT_CHANGED
    return None


def apply(posting, books, holds):
    """Apply ``posting`` to ``books`` (and ``holds``); its ``Outcome``. A refused posting
    changes nothing."""
    reason = refusal(posting, books)
    if reason is not None:
        return Outcome(reason=reason)
    if posting.hold:
        return _place_hold(posting, books[posting.debit_account_id], holds)
    return _move(posting, books[posting.debit_account_id], books[posting.credit_account_id],
                 holds)


def _place_hold(posting, debit, holds):
    """Reserve the amount on the debit account: the same funds check as a debit."""
    if debit.available < posting.amount:
        return Outcome(reason=INSUFFICIENT_FUNDS)
    if debit.held + posting.amount > BIGINT_MAX:
        return Outcome(reason=MALFORMED)
    debit.held += posting.amount
    debit.row_limit = debit.overdraft_limit
    debit.changed = True
    hold = HoldBook(posting.transaction_id, debit.account_id, posting.currency,
                    posting.amount, new=True)
    holds[hold.transaction_id] = hold
    return Outcome(hold=hold)


def _move(posting, debit, credit, holds):
    """Move the money, first freeing the hold a capture settles: the capture spends the
    money reserved for it, and a partial capture leaves the rest available."""
    released = 0
    hold = None
    if posting.capture_of is not None:
        hold = holds.get(posting.capture_of)
        if hold is None or hold.account_id != debit.account_id:
            return Outcome(reason=HOLD_NOT_FOUND)
        if hold.status != HELD:
            return Outcome(reason=HOLD_NOT_ACTIVE)
        if hold.currency != posting.currency:
            return Outcome(reason=CURRENCY_MISMATCH)
        if posting.amount > hold.amount:
            return Outcome(reason=AMOUNT_EXCEEDS_HOLD)
        released = hold.amount
    if not debit.is_settlement and (
            available_balance(debit.balance, debit.held - released, debit.overdraft_limit)
            < posting.amount):
        return Outcome(reason=INSUFFICIENT_FUNDS)
    debit_after, credit_after = debit.balance - posting.amount, credit.balance + posting.amount
    if max(-debit_after, credit_after) > BIGINT_MAX:
        return Outcome(reason=MALFORMED)
    if hold is not None:
        hold.status, hold.settled_by, hold.settled = CAPTURED, posting.transaction_id, True
        debit.held -= released
    lines = []
    for book, amount, after in ((debit, -posting.amount, debit_after),
                                (credit, posting.amount, credit_after)):
        book.balance = after
        book.last_seq += 1
        book.changed = True
        lines.append(Line(book.account_id, amount, after, book.last_seq))
    if not debit.is_settlement:
        debit.row_limit = debit.overdraft_limit
    return Outcome(lines=lines)
