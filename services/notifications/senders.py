"""One attempt at one delivery over its channel: a signed POST, or a message over SMTP.

Each returns an ``Outcome`` and never raises for what the other side does (refused
connection, timeout, non-2xx, SMTP error): the delivery loop records it and retries.
"""
import smtplib
from dataclasses import dataclass

import eventlet
import requests

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


def post_webhook(url, secret, raw_body, timeout_s, extra_headers=None):
    """POSTs ``raw_body`` signed with ``secret``; a 2xx answer within ``timeout_s`` (the
    whole exchange, however slowly the receiver drips) is delivered. Redirects are not
    followed (a 3xx is a failure), and the response body is never read."""
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        SIGNATURE_HEADER: signature(secret, raw_body),
    }
    headers.update(extra_headers or {})
    deadline = eventlet.Timeout(timeout_s)
    try:
        response = requests.post(url, data=raw_body, headers=headers, timeout=timeout_s,
                                 allow_redirects=False, stream=True)
        response.close()
    except eventlet.Timeout as raised:
        if raised is not deadline:
            raise
        return Outcome.failed("timed out after {:g} s".format(timeout_s))
    except requests.Timeout:
        return Outcome.failed("timed out after {:g} s".format(timeout_s))
    except requests.RequestException as error:
        return Outcome.failed("{}: {}".format(type(error).__name__, _first_line(error)))
    finally:
        deadline.cancel()
    if 200 <= response.status_code < 300:
        return Outcome.succeeded(response.status_code)
    return Outcome.failed("HTTP {} {}".format(response.status_code, response.reason or "").strip(),
                          status_code=response.status_code)


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
