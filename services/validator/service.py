from shared.db import Database
from shared.service import ServiceBase


class ValidatorService(ServiceBase):
    # Each process of the pool runs under its own RPC identity (validator_1 … validator_N):
    # `paysys serve validator_2` sets the name; see paysys/runner.py.
    name = "validator"
    db = Database(schema="validator")
