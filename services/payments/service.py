from shared.db import Database
from shared.service import ServiceBase


class PaymentsService(ServiceBase):
    name = "payments"
    db = Database(schema="payments")
