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
"""
import hashlib
import json
import time
from collections import deque
from dataclasses import dataclass

from sqlalchemy import text

from shared.errors import BadRequest, Conflict, ValidationFailed

MAX_KEY_LENGTH = 255
HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
# Headers worth replaying with a stored response.
STORED_HEADERS = ("Location", "Content-Type")


@dataclass(frozen=True)
class StoredResponse:
    status: int
    body: str
    headers: dict


def parse_key(value, required):
    """The header's key, or None when absent and optional; ``BadRequest`` when malformed."""
    if value is None or value == "":
        if required:
            raise BadRequest("This operation moves money: send an Idempotency-Key header "
                             "(1-255 printable characters).", code="idempotency_key_required")
        return None
    if len(value) > MAX_KEY_LENGTH or not all(" " <= char <= "~" for char in value):
        raise BadRequest("Idempotency-Key must be 1-255 printable ASCII characters.",
                         code="idempotency_key_invalid")
    return value


def fingerprint(operation_id, path, body):
    """What a key was used for; the body in canonical JSON, so spacing and order do not count."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256("{}\n{}\n{}".format(operation_id, path, canonical).encode()).hexdigest()


CLAIM = text("""
    INSERT INTO gateway.idempotency_keys (user_id, key, fingerprint, locked_until, expires_at)
    VALUES (:user_id, :key, :fingerprint,
            now() + make_interval(secs => :lease_s), now() + make_interval(secs => :ttl_s))
    ON CONFLICT (user_id, key) DO UPDATE
       SET fingerprint = EXCLUDED.fingerprint, locked_until = EXCLUDED.locked_until,
           expires_at = EXCLUDED.expires_at, created_at = now(),
           status_code = NULL, response_body = NULL, response_headers = NULL
     WHERE idempotency_keys.expires_at < now()
    RETURNING 1
""")
READ = text("""
    SELECT fingerprint, status_code, response_body, response_headers,
           locked_until > now() AS locked
      FROM gateway.idempotency_keys WHERE user_id = :user_id AND key = :key
""")
TAKE_OVER = text("""
    UPDATE gateway.idempotency_keys SET locked_until = now() + make_interval(secs => :lease_s)
     WHERE user_id = :user_id AND key = :key AND status_code IS NULL
       AND locked_until <= now()
    RETURNING 1
""")
STORE = text("""
    UPDATE gateway.idempotency_keys
       SET status_code = :status, response_body = :body,
           response_headers = CAST(:headers AS jsonb), locked_until = NULL
     WHERE user_id = :user_id AND key = :key
""")
RELEASE = text("""
    DELETE FROM gateway.idempotency_keys
     WHERE user_id = :user_id AND key = :key AND status_code IS NULL
""")
PURGE = text("""
    DELETE FROM gateway.idempotency_keys WHERE ctid IN (
        SELECT ctid FROM gateway.idempotency_keys WHERE expires_at < now() LIMIT :batch)
""")


class IdempotencyStore:
    def __init__(self, db, ttl_s, lease_s):
        self.db = db
        self.ttl_s = int(ttl_s)
        self.lease_s = int(lease_s)

    def begin(self, user_id, key, request_fingerprint):
        """None when this request now owns the key; else the ``StoredResponse`` to replay.

        Raises ``ValidationFailed`` (key used for another request) or
        ``Conflict`` (the first request with this key is still in flight).
        """
        ids = {"user_id": user_id, "key": key}
        with self.db.transaction() as connection:
            claimed = connection.execute(CLAIM, dict(
                ids, fingerprint=request_fingerprint, lease_s=self.lease_s, ttl_s=self.ttl_s,
            )).first()
            if claimed:
                return None
            row = connection.execute(READ, ids).one()
            if row.fingerprint != request_fingerprint:
                raise ValidationFailed(
                    "This Idempotency-Key was already used for a different request.",
                    code="idempotency_key_reused")
            if row.status_code is not None:
                return StoredResponse(row.status_code, row.response_body,
                                      row.response_headers or {})
            if not row.locked and connection.execute(
                    TAKE_OVER, dict(ids, lease_s=self.lease_s)).first():
                return None  # the first attempt's gateway died; this one carries on
        raise Conflict("A request with this Idempotency-Key is still in flight; retry later.",
                       code="idempotency_key_in_flight")

    def finish(self, user_id, key, status, body, headers):
        """Keep the response for replays, or release the key after a 5xx so a retry may run."""
        ids = {"user_id": user_id, "key": key}
        with self.db.transaction() as connection:
            if status >= 500:
                connection.execute(RELEASE, ids)
                return
            kept = {name: headers[name] for name in STORED_HEADERS if name in headers}
            connection.execute(STORE, dict(ids, status=status, body=body,
                                           headers=json.dumps(kept)))

    def release(self, user_id, key):
        with self.db.transaction() as connection:
            connection.execute(RELEASE, {"user_id": user_id, "key": key})

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
