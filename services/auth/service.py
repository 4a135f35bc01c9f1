from shared.db import Database
from shared.service import ServiceBase


class AuthService(ServiceBase):
    name = "auth"
    db = Database(schema="auth")
