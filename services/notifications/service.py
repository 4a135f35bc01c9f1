from shared.db import Database
from shared.service import ServiceBase


class NotificationsService(ServiceBase):
    name = "notifications"
    db = Database(schema="notifications")
