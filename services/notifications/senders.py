"""One attempt at one delivery over its channel: a signed POST, or a message over SMTP.

Each returns an ``Outcome`` and never raises for what the other side does (refused
connection, timeout, non-2xx, SMTP error): the delivery loop records it and retries.
"""
import smtplib
from dataclasses import dataclass

import certifi
import eventlet
import urllib3
from requests.utils import requote_uri

from services.notifications import destinations
from services.notifications.messages import SIGNATURE_HEADER, signature

USER_AGENT = "paysys-webhooks/1"


@dataclass(frozen=True)
class Outcome:
    outcome: str  # succeeded | failed | deferred
    status_code: int = None
    error: str = None
    # A failure that no retry can mend (e.g. the mailbox does not exist).
    permanent: bool = False

    @classmethod
    def succeeded(cls, status_code=None):
        return cls("succeeded", status_code)

    @classmethod
    def failed(cls, error, status_code=None, permanent=False):
        return cls("failed", status_code, error, permanent)

    @classmethod
    def deferred(cls, error):
        return cls("deferred", None, error)


def post_webhook(url, secret, raw_body, timeout_s, allowed_networks=(), extra_headers=None):
    """POSTs ``raw_body`` signed with ``secret``; a 2xx answer within ``timeout_s`` (the
    whole exchange, DNS included, however slowly the receiver drips) is delivered.

    The destination is checked first (destinations.py) and the POST goes to the addresses
    checked, never to a name resolved again. Redirects are not followed (a 3xx is a
    failure), no proxy of the environment is used, and the response body is never read."""
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        SIGNATURE_HEADER: signature(secret, raw_body),
    }
    headers.update(extra_headers or {})
    deadline = eventlet.Timeout(timeout_s)
    try:
        target = destinations.target(url, allowed_networks, timeout_s)
        status, reason = _post(target, raw_body, headers, timeout_s)
    except destinations.Refused as refused:
        # An address never changes its kind; a name may come to resolve elsewhere.
        return Outcome.failed("destination refused: {}".format(refused),
                              permanent=destinations.is_literal(url))
    except destinations.Unresolved as error:
        return Outcome.failed(str(error))
    except eventlet.Timeout as raised:
        if raised is not deadline:
            raise
        return Outcome.failed("timed out after {:g} s".format(timeout_s))
    except urllib3.exceptions.TimeoutError as error:
        if isinstance(error, urllib3.exceptions.NewConnectionError):  # (a subclass, alas)
            return Outcome.failed("connection refused: {}".format(_first_line(error)))
        return Outcome.failed("timed out after {:g} s".format(timeout_s))
    except (urllib3.exceptions.HTTPError, OSError) as error:
        return Outcome.failed("{}: {}".format(type(error).__name__, _first_line(error)))
    finally:
        deadline.cancel()
    if 200 <= status < 300:
        return Outcome.succeeded(status)
    return Outcome.failed("HTTP {} {}".format(status, reason or "").strip(), status_code=status)


def _post(target, raw_body, headers, timeout_s):
    """``(status, reason)`` of the POST to the first of ``target.addresses`` that takes a
    connection; the Host header and TLS (SNI, certificate) still name the URL's host."""
    headers = dict(headers, Host=target.host_header)
    if target.userinfo is not None:
        headers.update(urllib3.util.make_headers(basic_auth=target.userinfo))
    error = None
    for address in target.addresses:
        pool = _pool(target, address, timeout_s)
        try:
            response = pool.urlopen("POST", requote_uri(target.path), body=raw_body,
                                    headers=headers, retries=False, redirect=False,
                                    assert_same_host=False, preload_content=False)
            response.close()
            return response.status, response.reason
        except urllib3.exceptions.NewConnectionError as refused:
            error = refused  # this address takes no connection: try the next one
        finally:
            pool.close()
    raise error


def _pool(target, address, timeout_s):
    options = dict(port=target.port, maxsize=1, retries=False,
                   timeout=urllib3.Timeout(connect=timeout_s, read=timeout_s))
    if target.scheme == "http":
        return urllib3.HTTPConnectionPool(address, **options)
    named = target.host != address
    return urllib3.HTTPSConnectionPool(
        address, cert_reqs="CERT_REQUIRED", ca_certs=certifi.where(),
        server_hostname=target.host if named else None,
        assert_hostname=target.host if named else None, **options)


def send_email(message, host, port, timeout_s):
    """Hands ``message`` to the SMTP server; accepted (250 after DATA) is delivered.

    Only a permanent refusal of the recipient (5xx at RCPT) fails the delivery at once;
    every other error (connection, 4xx, a server answering 5xx to our sender) is retried."""
    deadline = eventlet.Timeout(timeout_s)
    try:
        with smtplib.SMTP(host, port, timeout=timeout_s) as smtp:
            smtp.send_message(message)
    except eventlet.Timeout as raised:
        if raised is not deadline:
            raise
        return Outcome.failed("SMTP timed out after {:g} s".format(timeout_s))
    except smtplib.SMTPRecipientsRefused as error:
        codes = [code for code, _ in error.recipients.values()]
        reason = "; ".join("{} {}".format(code, _text(text))
                           for code, text in error.recipients.values())
        return Outcome.failed("SMTP recipient refused: " + reason,
                              status_code=codes[0] if codes else None,
                              permanent=bool(codes) and all(500 <= code < 600 for code in codes))
    except smtplib.SMTPResponseException as error:
        return Outcome.failed("SMTP {} {}".format(error.smtp_code, _text(error.smtp_error)),
                              status_code=error.smtp_code)
    except (smtplib.SMTPException, OSError) as error:
        return Outcome.failed("SMTP {}: {}".format(type(error).__name__, _first_line(error)))
    finally:
        deadline.cancel()
    return Outcome.succeeded(250)


def _text(value):
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _first_line(error):
    text = str(error) or type(error).__name__
    return text.splitlines()[0] if text else text
