"""The access log: one line per HTTP request the gateway answers, at info level.

    {"message": "POST /v1/transfers 201", "method": "POST", "route": "/v1/transfers",
     "status": 201, "duration_ms": 12.3, "user_id": "…", "client_ip": "203.0.113.7",
     "request_id": "…", "trace_id": "…", …}

``route`` is the route's template (``/v1/accounts/{account_id}``), never the path a
client sent, so lines group by route and carry no ids of the client's choosing; a
request no route matched (404, 405) is ``unmatched``. ``client_ip`` is the address the
per-IP rate limit counts (trusted proxies' X-Forwarded-For honoured); ``user_id`` is
there once the bearer token was verified.
"""
import logging

log = logging.getLogger("gateway.access")

# Where the guard leaves the verified caller's id for the access line.
USER_ID_KEY = "paysys.user_id"


def note_user(request, user_id):
    """The guard verified ``request``'s token: its line names the user."""
    request.environ[USER_ID_KEY] = user_id


def log_request(request, method, route, status, duration_s, client_ip, request_id):
    if not log.isEnabledFor(logging.INFO):
        return
    log.info("%s %s %s", method, route, status, extra={"fields": {
        "method": method,
        "route": route,
        "status": status,
        "duration_ms": round(duration_s * 1000, 3),
        "user_id": request.environ.get(USER_ID_KEY),
        "client_ip": client_ip,
        "request_id": request_id,
    }})
