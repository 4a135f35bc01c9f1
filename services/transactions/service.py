from shared.db import Database
from shared.service import ServiceBase


class TransactionsService(ServiceBase):
    name = "transactions"
    db = Database(schema="transactions")
