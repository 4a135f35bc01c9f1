"""Error types that cross service boundaries.

A service raises one of these; Nameko serializes it into the RPC reply, and
because each class is registered with ``deserialize_to_instance`` the caller gets the same
typed exception back instead of a generic ``RemoteError``. The gateway turns
each into an ``application/problem+json`` response with its status and code.
"""
from nameko.exceptions import deserialize_to_instance


class PaysysError(Exception):
    """Base of every error a client may see. ``code`` is stable and machine-readable."""

    status = 500
    code = "internal_error"
    title = "Internal error"

    def __init__(self, detail="", code=None):
        # ``args`` is what crosses the wire: everything needed to rebuild the error.
        super().__init__(detail or self.title, code or self.code)
        self.detail, self.code = self.args

    def __str__(self):
        return self.detail


@deserialize_to_instance
class BadRequest(PaysysError):
    status, code, title = 400, "malformed_request", "Malformed request"


@deserialize_to_instance
class Unauthorized(PaysysError):
    status, code, title = 401, "unauthorized", "Unauthorized"


@deserialize_to_instance
class Forbidden(PaysysError):
    status, code, title = 403, "forbidden", "Forbidden"


@deserialize_to_instance
class NotFound(PaysysError):
    status, code, title = 404, "not_found", "Not found"


@deserialize_to_instance
class Conflict(PaysysError):
    status, code, title = 409, "conflict", "Conflict"


@deserialize_to_instance
class UnsupportedMediaType(PaysysError):
    status, code, title = 415, "unsupported_media_type", "Unsupported media type"


@deserialize_to_instance
class ValidationFailed(PaysysError):
    status, code, title = 422, "validation_error", "Validation failed"

    def __init__(self, detail="", code=None, errors=None):
        super().__init__(detail, code)
        self.args += (errors,)
        self.errors = errors or {}


@deserialize_to_instance
class RateLimited(PaysysError):
    status, code, title = 429, "rate_limited", "Too many requests"

    def __init__(self, detail="", code=None, retry_after_s=1):
        super().__init__(detail, code)
        self.args += (retry_after_s,)
        self.retry_after_s = int(retry_after_s)  # the wire carries it as a string


@deserialize_to_instance
class ServiceUnavailable(PaysysError):
    status, code, title = 503, "service_unavailable", "Service unavailable"

    def __init__(self, detail="", code=None, retry_after_s=5):
        super().__init__(detail, code)
        self.args += (retry_after_s,)
        self.retry_after_s = int(retry_after_s)  # the wire carries it as a string


def unanswered(detail):
    """The ``ServiceUnavailable`` of a call that got no answer (a timeout, no instance, no
    broker): the one kind a circuit breaker counts. The mark stays in this process: a
    service that answers 503 itself (its own dependency is down, or an outcome is not
    known yet) has answered, and its callers' breakers must not open on it."""
    error = ServiceUnavailable(detail)
    error.unanswered = True
    return error
