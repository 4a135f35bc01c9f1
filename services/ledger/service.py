from shared.db import Database
from shared.service import ServiceBase


class LedgerService(ServiceBase):
    name = "ledger"
    db = Database(schema="ledger")
