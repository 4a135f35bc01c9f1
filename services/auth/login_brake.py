"""The login brake: failed logins per (e-mail address, client IP) with exponential backoff.

A credential-stuffing or guessing run tries many passwords for one address from one place.
After ``attempts_before_backoff`` attempts without a success, each further attempt from that
place for that address must wait ``base * 2^(n-1)`` seconds (at most ``cap``) after the one
before; meanwhile the answer is 429 with Retry-After, and no password is checked at all.
The pair is the key, so the owner logging in from anywhere else is not locked out by
someone else's run, and a success, or ``forget_after_s`` without attempts, starts afresh.

Every attempt is counted before its password is checked, in one locked row per pair, so
attempts sent in parallel get no more checks than attempts sent one by one. Unknown
addresses are braked the same way (the answer must not tell which addresses exist). An
IPv6 client counts by its /64: one host usually holds a whole /64 and could otherwise
take a fresh address for every attempt. The table keeps a hash of the address, not the
address: a copy of it names no one, nor what someone typed into the e-mail field.
"""
import hashlib
import ipaddress
import math
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import Column, DateTime, Integer, MetaData, Table, Text, delete, func, text
from sqlalchemy.dialects.postgresql import insert as pg_insert

from services.auth.users import normalize_email

metadata = MetaData(schema="auth")
login_attempts = Table(
    "login_attempts",
    metadata,
    Column("email_hash", Text, primary_key=True),
    Column("client", Text, primary_key=True),
    Column("failures", Integer, nullable=False),
    Column("blocked_until", DateTime(timezone=True), nullable=True),
    Column("last_attempt_at", DateTime(timezone=True), nullable=False),
)
IPV6_PREFIX = 64


@dataclass(frozen=True)
class Settings:
    # Their defaults are config.yml's (auth.login_…).
    attempts_before_backoff: int
    backoff_base_s: float
    backoff_cap_s: float
    forget_after_s: float

    @classmethod
    def from_settings(cls, auth):
        """From the auth settings' ``login_…`` keys (services/auth/settings.py, which
        refuses values that cannot work)."""
        return cls(attempts_before_backoff=auth.login_attempts_before_backoff,
                   backoff_base_s=auth.login_backoff_base_s,
                   backoff_cap_s=auth.login_backoff_cap_s,
                   forget_after_s=auth.login_forget_after_s)

    def wait_s(self, failures):
        """The wait after the ``failures``-th attempt without a success (0: none)."""
        beyond = failures - self.attempts_before_backoff
        if beyond < 0:
            return 0.0
        return min(self.backoff_cap_s, self.backoff_base_s * 2 ** min(beyond, 60))


def client_key(client_ip):
    """What the brake counts a client by: its address, an IPv6 one's /64 ("" unknown)."""
    if not isinstance(client_ip, str):
        return ""
    try:
        address = ipaddress.ip_address(client_ip.strip())
    except ValueError:
        return client_ip.strip()[:64]
    if address.version == 6 and address.ipv4_mapped is None:
        return str(ipaddress.ip_network("{}/{}".format(address, IPV6_PREFIX), strict=False))
    return str(getattr(address, "ipv4_mapped", None) or address)


def email_key(email):
    return hashlib.sha256(normalize_email(email).encode("utf-8", "replace")).hexdigest()


def admit(connection, email, client_ip, settings):
    """Counts one attempt of ``email`` from ``client_ip``: None when its password may be
    checked now, else the whole seconds to wait (nothing is counted then)."""
    key = {"email_hash": email_key(email), "client": client_key(client_ip)}
    # Insert or lock the pair's row: concurrent attempts of one pair take turns here.
    row = connection.execute(
        pg_insert(login_attempts)
        .values(failures=0, last_attempt_at=func.clock_timestamp(), **key)
        .on_conflict_do_update(index_elements=["email_hash", "client"],
                               set_={"failures": login_attempts.c.failures})
        .returning(login_attempts.c.failures, login_attempts.c.blocked_until,
                   login_attempts.c.last_attempt_at, func.clock_timestamp().label("now"))
    ).one()
    failures, blocked_until = row.failures, row.blocked_until
    if row.now - row.last_attempt_at > timedelta(seconds=settings.forget_after_s):
        failures, blocked_until = 0, None
    if blocked_until is not None and blocked_until > row.now:
        return max(1, math.ceil((blocked_until - row.now).total_seconds()))
    failures += 1
    wait_s = settings.wait_s(failures)
    connection.execute(
        login_attempts.update()
        .where(login_attempts.c.email_hash == key["email_hash"],
               login_attempts.c.client == key["client"])
        .values(failures=failures, last_attempt_at=row.now,
                blocked_until=row.now + timedelta(seconds=wait_s) if wait_s else None))
    return None


def forget(connection, email, client_ip):
    """A success: the pair starts afresh."""
    connection.execute(delete(login_attempts).where(
        login_attempts.c.email_hash == email_key(email),
        login_attempts.c.client == client_key(client_ip)))


def purge(connection, settings):
    """Deletes the pairs quiet for longer than ``forget_after_s``; how many."""
    return connection.execute(delete(login_attempts).where(
        login_attempts.c.last_attempt_at
        < func.clock_timestamp() - text("make_interval(secs => :forget_s)").bindparams(
            forget_s=float(settings.forget_after_s)))).rowcount
