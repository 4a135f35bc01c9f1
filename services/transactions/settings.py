"""The transactions service's settings: how long votes and decisions may take."""
from services.transactions.pipeline import REDRIVE_AFTER_S
from shared.settings import PositiveInt, Section, ServiceSettings, setting


class TransactionsSection(Section):
    vote_deadline_ms: PositiveInt = setting(
        "Votes are collected in parallel; a validator that has not voted by then is left out")
    undecided_timeout_s: int = setting(
        "Recovery (every 5 s and at start) fails a transaction still undecided this long "
        "after it was received, and posts approved ones whose posting was lost (longer than "
        "the {} s after which recovery votes again)".format(REDRIVE_AFTER_S),
        gt=REDRIVE_AFTER_S)

    @property
    def vote_deadline_s(self):
        return self.vote_deadline_ms / 1000


class TransactionsSettings(ServiceSettings):
    transactions: TransactionsSection
