"""Opaque pagination cursors: urlsafe base64 (unpadded) of a small JSON object.

The object names the last item of a page (its sort key); clients pass the
cursor back unchanged. Anything that does not decode to an object with
exactly the expected fields is refused, so a forged cursor is a 422, never
a 500.
"""
import base64
import binascii
import json
from datetime import datetime

from shared.errors import ValidationFailed
from shared.ids import parse_id, rfc3339

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


def encode_time_and_id(created_at, item_id):
    """The cursor of a list ordered by (created_at, id), either way."""
    return encode_cursor({"t": rfc3339(created_at), "i": item_id})


def decode_time_and_id(cursor):
    """``(created_at, id)`` of such a cursor; ValueError when it is not one of ours."""
    position = decode_cursor(cursor, ("t", "i"))
    if not isinstance(position["t"], str):
        raise ValueError("not a cursor")
    created_at = datetime.fromisoformat(position["t"])  # ValueError when malformed
    item_id = parse_id(position["i"])
    if created_at.tzinfo is None or item_id is None:
        raise ValueError("not a cursor")
    return created_at, item_id


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
