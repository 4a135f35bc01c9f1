"""The commands services send each other to move money: typed, never an HTTP body.

The gateway (and the payments service) build a ``Movement`` from what a client asked;
the transactions service receives it as a plain dict (``to_wire``) and reads it back with
``Movement.from_wire``, which refuses anything malformed, so no HTTP field name or
unchecked value reaches the consensus protocol.
"""
from dataclasses import dataclass
from typing import Optional

from shared.errors import ValidationFailed
from shared.ids import parse_id
from shared.money import CURRENCIES, TRANSACTION_TYPES, is_amount

MAX_DESCRIPTION_LENGTH = 500
MAX_KEY_LENGTH = 255
MAX_BATCH_ITEMS = 1000
MAX_METADATA_KEYS = 50
MAX_METADATA_KEY_LENGTH = 40
MAX_METADATA_VALUE_LENGTH = 500


@dataclass(frozen=True)
class Movement:
    """One money movement: ``kind`` is a transaction type; a None account is the currency's
    settlement account (deposit: the source; withdrawal: the destination)."""

    kind: str
    initiator_id: str
    source_account_id: Optional[str]
    destination_account_id: Optional[str]
    amount: int
    currency: str
    idempotency_key: Optional[str] = None  # None only for the items of a batch
    description: Optional[str] = None
    # Client data kept with the transaction: string keys to string values, bounded.
    metadata: Optional[dict] = None
    # An admin may move money out of any account; anyone else only out of their own.
    acting_as_admin: bool = False
    # A payment that only holds the money (an authorization); the authorization a
    # capture captures.
    hold: bool = False
    authorization_id: Optional[str] = None
    # The HTTP request it came from, for the logs of the batch that carries it, and the
    # W3C traceparent of the request's span (shared/tracing.py).
    request_id: Optional[str] = None
    traceparent: Optional[str] = None

    def to_wire(self):
        # The fields as they are (``asdict`` deep-copies each, a tenth of the gateway's CPU
        # on a batch): every one is a plain JSON value.
        return dict(vars(self))

    @classmethod
    def from_wire(cls, data):
        """The movement ``data`` describes; ``ValidationFailed`` naming the field if it is
        malformed."""
        if not isinstance(data, dict):
            raise _invalid("movement", "must be an object")
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise _invalid(sorted(unknown)[0], "unknown field")
        try:
            movement = cls(**data)
        except TypeError as error:
            raise _invalid("movement", str(error)) from None
        movement.check()
        return movement

    def check(self):
        """Refuse what no movement may be (the gateway's schemas refuse it first)."""
        if self.kind not in TRANSACTION_TYPES:
            raise _invalid("kind", "must be one of {}".format(", ".join(TRANSACTION_TYPES)))
        if parse_id(self.initiator_id) is None:
            raise _invalid("initiator_id", "must be a user id")
        if not is_amount(self.amount):
            raise _invalid("amount", "must be an integer amount in minor units")
        if self.currency not in CURRENCIES:
            raise _invalid("currency", "must be one of {}".format(", ".join(CURRENCIES)))
        for name in ("source_account_id", "destination_account_id", "authorization_id"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise _invalid(name, "must be an id")
        if (self.source_account_id is None) != (self.kind == "deposit"):
            raise _invalid("source_account_id", "only a deposit comes from settlement")
        if (self.destination_account_id is None) != (self.kind == "withdrawal"):
            raise _invalid("destination_account_id", "only a withdrawal goes to settlement")
        if self.source_account_id is not None and (
                self.source_account_id == self.destination_account_id):
            raise ValidationFailed("The source and destination accounts must differ.",
                                   errors={"destination_account_id": ["Same as the source."]})
        if self.kind == "capture" and not self.authorization_id:
            raise _invalid("authorization_id", "A capture names the authorization it captures.")
        if self.hold and self.kind != "payment":
            raise _invalid("hold", "only a payment may hold")
        if self.idempotency_key is not None and not (
                isinstance(self.idempotency_key, str)
                and 1 <= len(self.idempotency_key) <= MAX_KEY_LENGTH):
            raise _invalid("idempotency_key", "must be 1 to {} characters".format(
                MAX_KEY_LENGTH))
        if self.description is not None and not (
                isinstance(self.description, str)
                and len(self.description) <= MAX_DESCRIPTION_LENGTH):
            raise _invalid("description", "must be text of at most {} characters".format(
                MAX_DESCRIPTION_LENGTH))
        if self.metadata is not None and not _is_metadata(self.metadata):
            raise _invalid("metadata", "must map at most {} keys of at most {} characters to "
                           "texts of at most {}".format(MAX_METADATA_KEYS,
                                                        MAX_METADATA_KEY_LENGTH,
                                                        MAX_METADATA_VALUE_LENGTH))
        if not isinstance(self.acting_as_admin, bool) or not isinstance(self.hold, bool):
            raise _invalid("acting_as_admin", "must be true or false")

    @property
    def accounts(self):
        return [account for account in (self.source_account_id, self.destination_account_id)
                if account is not None]


@dataclass(frozen=True)
class TransferBatch:
    """Many transfers in one request (POST /v1/transfers/batch), applied in order, each an
    ordinary transaction; ``atomic``: all of them complete or none does."""

    initiator_id: str
    idempotency_key: str
    movements: tuple  # of Movement, each of kind "transfer" and without a key of its own
    atomic: bool = False
    request_id: Optional[str] = None

    def to_wire(self):
        return {"initiator_id": self.initiator_id, "idempotency_key": self.idempotency_key,
                "atomic": self.atomic, "request_id": self.request_id,
                "movements": [movement.to_wire() for movement in self.movements]}

    @classmethod
    def from_wire(cls, data):
        if not isinstance(data, dict) or not isinstance(data.get("movements"), list):
            raise _invalid("movements", "must be a list")
        if not 1 <= len(data["movements"]) <= MAX_BATCH_ITEMS:
            raise _invalid("transfers", "must hold 1 to {} transfers".format(MAX_BATCH_ITEMS))
        movements = []
        for index, item in enumerate(data["movements"]):
            try:
                movement = Movement.from_wire(item)
            except ValidationFailed as error:
                raise ValidationFailed("transfers.{}: {}".format(index, error.detail), errors={
                    "transfers.{}.{}".format(index, name): messages
                    for name, messages in error.errors.items()}) from None
            if movement.kind != "transfer" or movement.idempotency_key is not None:
                raise _invalid("transfers.{}".format(index), "must be a transfer of the batch")
            movements.append(movement)
        batch = cls(data.get("initiator_id"), data.get("idempotency_key"), tuple(movements),
                    data.get("atomic", False), data.get("request_id"))
        if parse_id(batch.initiator_id) is None:
            raise _invalid("initiator_id", "must be a user id")
        if not (isinstance(batch.idempotency_key, str)
                and 1 <= len(batch.idempotency_key) <= MAX_KEY_LENGTH):
            raise _invalid("idempotency_key", "must be 1 to {} characters".format(
                MAX_KEY_LENGTH))
        if not isinstance(batch.atomic, bool):
            raise _invalid("atomic", "must be true or false")
        if any(m.initiator_id != batch.initiator_id for m in movements):
            raise _invalid("movements", "must all be the batch initiator's")
        return batch


def _is_metadata(value):
    return (isinstance(value, dict) and len(value) <= MAX_METADATA_KEYS and all(
        isinstance(key, str) and len(key) <= MAX_METADATA_KEY_LENGTH
        and isinstance(text, str) and len(text) <= MAX_METADATA_VALUE_LENGTH
        for key, text in value.items()))


def _invalid(field, message):
    return ValidationFailed("{}: {}".format(field, message), errors={field: [message]})
