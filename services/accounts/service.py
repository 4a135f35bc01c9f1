from shared.db import Database
from shared.service import ServiceBase


class AccountsService(ServiceBase):
    name = "accounts"
    db = Database(schema="accounts")
