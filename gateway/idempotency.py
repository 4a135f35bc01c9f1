"""The Idempotency-Key machinery of the HTTP contract, stored durably in PostgreSQL.

A key belongs to one user. Its first use claims it (one INSERT: of two
concurrent first uses exactly one wins) and holds a lease while the request
runs; the response is then stored with it. Later uses with the same
fingerprint (route, path and canonical body) replay that response; with
another fingerprint they are 422, and while the first is still running 409.

A 5xx answer is not stored: the key is released so the client may retry, and
what runs behind it is idempotent on its own, so a retry never moves money
twice. Keys expire ``ttl_s`` after their first use (24 hours by default); an
expired key may be used afresh and a timer deletes old ones.

The lease is fenced: each claim and take-over writes a token of its own, and a request's
answer is stored (or its key released) only under its token. A first request that runs
past its lease, after a retry took the key over, can then neither overwrite the retry's
answer nor release the key under it.
"""
import hashlib
import json
import time
import uuid
from collections import deque
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.dialects.postgresql import UUID

from shared.errors import BadRequest, Conflict, ValidationFailed

MAX_KEY_LENGTH = 255
HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
# Headers worth replaying with a stored response.
STORED_HEADERS = ("Location", "Content-Type")
ID = UUID(as_uuid=False)


@dataclass(frozen=True)
class StoredResponse:
    status: int
    body: str
    headers: dict


def parse_key(value, required):
    """The header's key, or None when absent and optional; ``BadRequest`` when malformed."""
    if value is None or (value == "" and required):
        if required:
            raise BadRequest("This operation moves money: send an Idempotency-Key header "
                             "(1-255 printable characters).", code="idempotency_key_required")
        return None
    # An empty key where a key is optional is a malformed key, not an absent one.
    if not value or len(value) > MAX_KEY_LENGTH or not all(" " <= char <= "~" for char in value):
        raise BadRequest("Idempotency-Key must be 1-255 printable ASCII characters.",
                         code="idempotency_key_invalid")
    return value


def fingerprint(operation_id, path, body):
    """What a key was used for; the body in canonical JSON, so spacing and order do not count."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256("{}\n{}\n{}".format(operation_id, path, canonical).encode()).hexdigest()


@dataclass(frozen=True)
class Lease:
    """This request holds the key: its answer is stored (or the key released) with this
    token, and only while no retry has taken the key over since (fencing)."""

    token: str


@dataclass(frozen=True)
class Begin:
    """One request's first look at its key."""

    user_id: str
    key: str
    fingerprint: str


@dataclass(frozen=True)
class Finish:
    """One request's answer to keep (a 5xx: the key to release) under its lease."""

    user_id: str
    key: str
    token: str
    status: int
    body: str = ""
    headers: dict = None


@dataclass
class Claim:
    """A request's claim of its key; ``lease`` once it holds the key. The guard claims
    before the handler runs, in a transaction of the request's own (shared with whatever
    else is in flight just then); a money desk route (gateway/desk.py) leaves the claim to
    the desk, which claims every key of its batch in one transaction: requests reach the
    desk together, where they arrive at the guard one or two at a time."""

    begin: Begin
    lease: Lease = None


class Replay(Exception):
    """The desk found the key already answered: the request replays ``stored``."""

    def __init__(self, stored):
        super().__init__("replay")
        self.stored = stored


class ClaimRefused(Exception):
    """The desk could not claim the key (its first request is in flight, or it was used for
    another request): the request answers ``error`` and keeps nothing under the key."""

    def __init__(self, error):
        super().__init__(str(error))
        self.error = error


_REQUESTS = """
    unnest(CAST(:users AS uuid[]), CAST(:keys AS text[]), CAST(:fingerprints AS text[]),
           CAST(:tokens AS uuid[])) AS r(user_id, key, fingerprint, token)
"""
CLAIM = text("""
    INSERT INTO gateway.idempotency_keys
           (user_id, key, fingerprint, locked_until, expires_at, lease_token)
    SELECT r.user_id, r.key, r.fingerprint, now() + make_interval(secs => :lease_s),
           now() + make_interval(secs => :ttl_s), r.token
      FROM """ + _REQUESTS + """
    ON CONFLICT (user_id, key) DO UPDATE
       SET fingerprint = EXCLUDED.fingerprint, locked_until = EXCLUDED.locked_until,
           expires_at = EXCLUDED.expires_at, created_at = now(),
           lease_token = EXCLUDED.lease_token,
           status_code = NULL, response_body = NULL, response_headers = NULL
     WHERE idempotency_keys.expires_at < now()
    RETURNING user_id, key
""").columns(user_id=ID)
READ = text("""
    SELECT k.user_id, k.key, k.fingerprint, k.status_code, k.response_body,
           k.response_headers, k.locked_until > now() AS locked
      FROM gateway.idempotency_keys k
      JOIN """ + _REQUESTS + """ ON k.user_id = r.user_id AND k.key = r.key
""").columns(user_id=ID)
TAKE_OVER = text("""
    UPDATE gateway.idempotency_keys k
       SET locked_until = now() + make_interval(secs => :lease_s), lease_token = r.token
      FROM """ + _REQUESTS + """
     WHERE k.user_id = r.user_id AND k.key = r.key AND k.status_code IS NULL
       AND k.locked_until <= now()
    RETURNING k.user_id, k.key
""").columns(user_id=ID)
_ANSWERS = """
    unnest(CAST(:users AS uuid[]), CAST(:keys AS text[]), CAST(:tokens AS uuid[]),
           CAST(:statuses AS integer[]), CAST(:bodies AS text[]), CAST(:headers AS jsonb[]))
      AS a(user_id, key, token, status, body, headers)
"""
STORE = text("""
    UPDATE gateway.idempotency_keys k
       SET status_code = a.status, response_body = a.body, response_headers = a.headers,
           locked_until = NULL
      FROM """ + _ANSWERS + """
     WHERE k.user_id = a.user_id AND k.key = a.key AND k.lease_token = a.token
""")
RELEASE = text("""
    DELETE FROM gateway.idempotency_keys k USING """ + _ANSWERS + """
     WHERE k.user_id = a.user_id AND k.key = a.key AND k.lease_token = a.token
       AND k.status_code IS NULL
""")
# The gateway's idempotency records are not money: a claim or an answer lost with a
# PostgreSQL crash costs at most a retry that runs again, and what runs behind it is
# idempotent on its own (the transactions service records each key once). So these
# commits do not wait for the disk, which takes two fsyncs off every money request's path.
NO_FSYNC_WAIT = text("SET LOCAL synchronous_commit TO off")
PURGE = text("""
    DELETE FROM gateway.idempotency_keys WHERE ctid IN (
        SELECT ctid FROM gateway.idempotency_keys WHERE expires_at < now() LIMIT :batch)
""")


def _requests(begins, tokens):
    return {"users": [b.user_id for b in begins], "keys": [b.key for b in begins],
            "fingerprints": [b.fingerprint for b in begins], "tokens": tokens}


def _answers(finishes):
    return {"users": [f.user_id for f in finishes], "keys": [f.key for f in finishes],
            "tokens": [f.token for f in finishes], "statuses": [f.status for f in finishes],
            "bodies": [f.body for f in finishes],
            "headers": [json.dumps({name: (f.headers or {})[name] for name in STORED_HEADERS
                                    if name in (f.headers or {})}) for f in finishes]}


def _reused():
    return ValidationFailed("This Idempotency-Key was already used for a different request.",
                            code="idempotency_key_reused")


def _in_flight():
    return Conflict("A request with this Idempotency-Key is still in flight; retry later.",
                    code="idempotency_key_in_flight")


class IdempotencyStore:
    """Every method takes the requests of a whole batch (what a gateway process has in
    flight) and costs one database transaction for all of them."""

    def __init__(self, db, ttl_s, lease_s):
        self.db = db
        self.ttl_s = int(ttl_s)
        self.lease_s = int(lease_s)

    @classmethod
    def configured(cls, db, section):
        """The store on ``db`` with the gateway's ``idempotency`` settings ``section``."""
        return cls(db, section.ttl_s, section.lease_s)

    def begin_many(self, begins):
        """Per ``Begin``, in order: a ``Lease`` when this request now owns the key, the
        ``StoredResponse`` to replay, or the error to answer (``ValidationFailed``: the key
        was used for another request; ``Conflict``: its first request is in flight)."""
        results = [None] * len(begins)
        first = {}  # (user, key) -> index of its first request in this batch
        for index, begin in enumerate(begins):
            other = first.setdefault((begin.user_id, begin.key), index)
            if other != index:  # the same key twice at once: the second is not first
                same = begins[other].fingerprint == begin.fingerprint
                results[index] = _in_flight() if same else _reused()
        todo = [index for index in first.values()]
        tokens = {index: str(uuid.uuid4()) for index in todo}
        with self.db.transaction() as connection:
            connection.execute(NO_FSYNC_WAIT)
            wanted = [begins[index] for index in todo]
            claimed = set(map(tuple, connection.execute(CLAIM, dict(
                _requests(wanted, [tokens[index] for index in todo]),
                lease_s=self.lease_s, ttl_s=self.ttl_s)).all()))
            rest = [index for index in todo
                    if (begins[index].user_id, begins[index].key) not in claimed]
            stale = []
            if rest:
                rows = {(row.user_id, row.key): row for row in connection.execute(
                    READ, _requests([begins[index] for index in rest],
                                    [tokens[index] for index in rest]))}
                for index in rest:
                    row = rows.get((begins[index].user_id, begins[index].key))
                    if row is None:  # released by its first request a moment ago
                        results[index] = _in_flight()
                    elif row.fingerprint != begins[index].fingerprint:
                        results[index] = _reused()
                    elif row.status_code is not None:
                        results[index] = StoredResponse(row.status_code, row.response_body,
                                                        row.response_headers or {})
                    elif row.locked:
                        results[index] = _in_flight()
                    else:
                        stale.append(index)  # its gateway died: this one may carry on
            taken = set()
            if stale:
                taken = set(map(tuple, connection.execute(TAKE_OVER, dict(
                    _requests([begins[index] for index in stale],
                              [tokens[index] for index in stale]),
                    lease_s=self.lease_s)).all()))
        for index in todo:
            key = (begins[index].user_id, begins[index].key)
            if results[index] is None:
                results[index] = (Lease(tokens[index]) if key in claimed or key in taken
                                  else _in_flight())
        return results

    def finish_many(self, finishes):
        """Keep each answer for replays, or release the key after a 5xx so a retry may
        run; either only while the request still holds the key's lease."""
        stores = [f for f in finishes if f.status < 500]
        releases = [f for f in finishes if f.status >= 500]
        with self.db.transaction() as connection:
            connection.execute(NO_FSYNC_WAIT)
            if stores:
                connection.execute(STORE, _answers(stores))
            if releases:
                connection.execute(RELEASE, _answers(releases))

    def begin(self, user_id, key, request_fingerprint):
        """``begin_many`` of one request: a ``Lease`` or a ``StoredResponse``; raises its
        error."""
        [result] = self.begin_many([Begin(user_id, key, request_fingerprint)])
        if isinstance(result, Exception):
            raise result
        return result

    def finish(self, user_id, key, token, status, body, headers):
        self.finish_many([Finish(user_id, key, token, status, body, headers)])

    def release(self, user_id, key, token):
        self.finish_many([Finish(user_id, key, token, 500)])

    def purge_expired(self, batch=1000):
        """Delete expired keys; the number deleted."""
        deleted = 0
        while True:
            with self.db.transaction() as connection:
                count = connection.execute(PURGE, {"batch": batch}).rowcount
            deleted += count
            if count < batch:
                return deleted


class DeferredWrites:
    """The store's last writes of requests that could not make them (the database away):
    the answer to keep, or the key to release after a 5xx. Left undone, the key would
    answer 409 "in flight" to every retry until its lease lapses; retried in the
    background instead, retries are served as soon as the database is back. A write older
    than the lease is dropped: a retry may take the key over by then anyway."""

    def __init__(self, lease_s, clock=time.monotonic):
        self.lease_s = lease_s
        self.clock = clock
        self.pending = deque()

    def add(self, write):
        self.pending.append((self.clock(), write))

    def flush(self):
        """Try every pending write once, in order; the number still pending."""
        for _ in range(len(self.pending)):
            since, write = self.pending.popleft()
            if self.clock() - since > self.lease_s:
                continue
            try:
                write()
            except Exception:  # noqa: BLE001 - still away: keep it for the next round
                self.pending.append((since, write))
        return len(self.pending)
