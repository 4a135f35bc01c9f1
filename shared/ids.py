"""Ids and timestamps as they cross service boundaries: canonical UUID text, RFC 3339 UTC."""
import functools
import re
import uuid
from datetime import timezone

MAX_ID_TEXT = 64
# What every id the system makes looks like: checked with one match, not a parse, since
# ids cross every call of a batch many times over.
CANONICAL = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def parse_id(value):
    """The canonical text of a UUID, or None when ``value`` is not one (never raises):
    a malformed id names nothing, so callers answer it like an unknown one."""
    if isinstance(value, str) and CANONICAL.fullmatch(value):
        return value
    if isinstance(value, uuid.UUID):
        return str(value)
    if not isinstance(value, str) or len(value) > MAX_ID_TEXT:
        return None
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return None


@functools.lru_cache(maxsize=4096)  # a batch's rows share their moments (one now() each)
def rfc3339(moment):
    """``2026-11-25T21:33:20.123456Z``: UTC, always with microseconds."""
    return moment.astimezone(timezone.utc).replace(tzinfo=None).isoformat(
        timespec="microseconds") + "Z"
