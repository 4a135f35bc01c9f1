"""Ids and timestamps as they cross service boundaries: canonical UUID text, RFC 3339 UTC."""
import functools
import re
import uuid
from datetime import datetime, timedelta, timezone

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


# RFC 3339's date-time (section 5.6): "T" and "Z" in either case, any fraction of a second,
# an offset always (a time without one names no moment).
_RFC3339 = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[Tt](\d\d):(\d\d):(\d\d)(?:\.(\d+))?"
    r"(?:([Zz])|([+-])(\d\d):(\d\d))")
MAX_RFC3339_TEXT = 64


def parse_rfc3339(value):
    """The moment an RFC 3339 date-time names, as an aware UTC datetime; None when
    ``value`` is not one. A leap second (``:60``) is the last microsecond before it; a
    moment beyond what a datetime holds (year 0, or an offset past year 9999) is the
    earliest or latest one."""
    if not isinstance(value, str) or len(value) > MAX_RFC3339_TEXT:
        return None
    match = _RFC3339.fullmatch(value)
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(part) for part in match.group(1, 2, 3, 4, 5, 6))
    fraction = int((match.group(7) or "0")[:6].ljust(6, "0"))
    if hour > 23 or minute > 59 or second > 60:
        return None
    if match.group(8):
        offset = timedelta(0)
    else:
        hours, minutes = int(match.group(10)), int(match.group(11))
        if hours > 23 or minutes > 59:
            return None
        offset = timedelta(hours=hours, minutes=minutes) * (1 if match.group(9) == "+" else -1)
    leap = second == 60
    try:
        # Year 0 (1 BC) is a leap year like 2000: its days are checked as that year's.
        local = datetime(year or 2000, month, day, hour, minute, 59 if leap else second,
                         999999 if leap else fraction)
    except ValueError:
        return None  # no such day (February 30th) or month
    if year == 0:
        return datetime.min.replace(tzinfo=timezone.utc)
    try:
        return (local - offset).replace(tzinfo=timezone.utc)
    except OverflowError:
        edge = datetime.min if offset > timedelta(0) else datetime.max
        return edge.replace(tzinfo=timezone.utc)
