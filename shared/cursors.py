"""Pagination cursors: opaque to clients, but of a documented syntax (the OpenAPI document
gives each list's pattern), and every string of that syntax is a position a list can start
after. So a cursor that matches the pattern is never refused, and one that does not is a 422,
never a 500.

- Lists ordered by (created_at, id): ``<microseconds since 1970>_<the id's 32 hex digits>``
  (``TIME_AND_ID_PATTERN``).
- An account's entries, ordered by their sequence: the sequence number (``SEQUENCE_PATTERN``).

``encode_cursor`` / ``decode_cursor`` (urlsafe base64 of a small JSON object) are kept for
positions no pattern describes.
"""
import base64
import binascii
import json
import re
import uuid
from datetime import datetime, timedelta, timezone

from shared.errors import ValidationFailed

MAX_CURSOR_LENGTH = 512


def encode_cursor(position):
    payload = json.dumps(position, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(payload.encode("utf-8")).decode("ascii").rstrip("=")


def decode_cursor(cursor, fields):
    """The position dict of ``cursor``, with exactly ``fields``; ValueError otherwise."""
    if not isinstance(cursor, str) or not 0 < len(cursor) <= MAX_CURSOR_LENGTH:
        raise ValueError("not a cursor")
    try:
        raw = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True)
        position = json.loads(raw.decode("utf-8"))
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValueError("not a cursor") from None
    if not isinstance(position, dict) or set(position) != set(fields):
        raise ValueError("not a cursor")
    return position


TIME_AND_ID_PATTERN = r"^[0-9]{1,16}_[0-9a-f]{32}$"
SEQUENCE_PATTERN = r"^[1-9][0-9]{0,17}$"
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
ONE_MICROSECOND = timedelta(microseconds=1)


def encode_time_and_id(created_at, item_id):
    """The cursor of a list ordered by (created_at, id), either way: exact to the
    microsecond, as PostgreSQL keeps the time."""
    return "{}_{}".format((created_at - EPOCH) // ONE_MICROSECOND, uuid.UUID(str(item_id)).hex)


def decode_time_and_id(cursor):
    """``(created_at, id)`` of such a cursor; ValueError when it is not one."""
    if not isinstance(cursor, str) or not re.match(TIME_AND_ID_PATTERN, cursor):
        raise ValueError("not a cursor")
    # re.match, as the gateway's check and JSON Schema tools in Python read the pattern: its
    # "$" lets one final newline through, which is no part of the position.
    micros, hex_id = cursor.rstrip("\n").split("_")
    return EPOCH + int(micros) * ONE_MICROSECOND, str(uuid.UUID(hex_id))


def encode_sequence(sequence):
    return str(sequence)


def decode_sequence(cursor):
    """The sequence number of such a cursor; ValueError when it is not one."""
    if not isinstance(cursor, str) or not re.match(SEQUENCE_PATTERN, cursor):
        raise ValueError("not a cursor")
    return int(cursor.rstrip("\n"))


DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200


def page_request(limit, cursor, decode):
    """Checks a page request at the service boundary: ``(limit, decoded position or None)``,
    or ``ValidationFailed`` naming the bad field."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE_SIZE:
        message = "must be an integer from 1 to {}".format(MAX_PAGE_SIZE)
        raise ValidationFailed("limit: " + message, errors={"limit": [message]})
    if cursor in (None, ""):
        return limit, None
    try:
        return limit, decode(cursor)
    except ValueError:
        raise ValidationFailed("cursor: malformed cursor",
                               errors={"cursor": ["malformed cursor"]}) from None
