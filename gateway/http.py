"""The gateway's HTTP entrypoint: problem+json errors, correlation ids, traces, metrics,
the access log.

Every route is a method decorated with ``@endpoint(route)`` (gateway.guard). The entrypoint
answers each request with JSON, maps every ``PaysysError`` (raised here or
re-raised from a service's RPC reply) to its status and ``code``, and never
leaks a traceback: anything else is a 500 with a correlation id to look up in
the logs.
"""
import logging
import time
from functools import partial

import eventlet
from eventlet.event import Event
from nameko.web.handlers import HttpRequestHandler
from nameko.web.server import WebServer, WsgiApp
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map
from werkzeug.wrappers import Request, Response

from gateway import access_log
from gateway.inputs import client_ip, trusted_proxies
from gateway.metrics import observe_request
from gateway.problems import problem_type
from gateway.routes import SegmentConverter
from shared import tracing, work_counters
from shared.wire_json import compact, parse
from shared.errors import PaysysError, RateLimited, ServiceUnavailable, Unauthorized
from shared.logs import CORRELATION_ID_KEY, new_correlation_id

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Request-ID"
PROBLEM_JSON = "application/problem+json"


def json_response(payload, status=200, headers=None):
    return Response(compact(payload, default=str), status=status, headers=headers,
                    mimetype="application/json")


def problem_response(status, code, detail, extra=None, headers=None):
    """The problem+json answer: ``type`` and ``title`` are the code's own
    (gateway/problems.py, documented in docs/errors.md)."""
    kind = problem_type(code, status)
    body = {"type": kind.type, "title": kind.title, "status": status, "detail": detail,
            "code": code}
    body.update(extra or {})
    return Response(compact(body), status=status, headers=headers, mimetype=PROBLEM_JSON)


# Werkzeug's own HTTP errors, by status, as the codes of docs/errors.md.
HTTP_ERROR_CODES = {400: "malformed_request", 404: "not_found", 405: "method_not_allowed",
                    415: "unsupported_media_type"}


def bearer_challenge(code):
    """The WWW-Authenticate header of a 401 (RFC 6750): ``invalid_token`` when a token was
    sent and refused; none when none was sent (the client must authenticate)."""
    challenge = 'Bearer realm="paysys"'
    if code in ("invalid_token", "token_expired"):
        challenge += ', error="invalid_token"'
    return challenge


def response_for_error(exc):
    """The problem+json response for an exception raised while handling a request."""
    if isinstance(exc, PaysysError):
        headers = {}
        if isinstance(exc, (RateLimited, ServiceUnavailable)):
            headers["Retry-After"] = str(int(exc.retry_after_s))
        if isinstance(exc, Unauthorized):
            headers["WWW-Authenticate"] = bearer_challenge(exc.code)
        extra = {"errors": exc.errors} if getattr(exc, "errors", None) else None
        return problem_response(exc.status, exc.code, exc.detail, extra, headers)
    if isinstance(exc, HTTPException) and exc.code in HTTP_ERROR_CODES:
        return problem_response(exc.code, HTTP_ERROR_CODES[exc.code], exc.description)
    # Nameko has logged the traceback with the worker's correlation id.
    return problem_response(500, "internal_error",
                            "Unexpected error; quote the X-Request-ID header when reporting it.")


# The metrics' route label of a request no route matched (404, 405), and the methods
# that keep their own label there (any other is "OTHER": a label per made-up method would
# let a client grow the metrics without bound).
UNMATCHED_ROUTE = "unmatched"
KNOWN_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}


def request_id(request):
    """The client's X-Request-ID if it is a sane one (1-128 visible ASCII characters), else
    a new one."""
    given = request.headers.get(REQUEST_ID_HEADER, "")
    if 0 < len(given) <= 128 and all("!" <= char <= "~" for char in given):
        return given
    return new_correlation_id()


def with_instance(response, request_id):
    """A problem+json ``response`` names the request it answers (``instance``), unless it
    names one already: a replayed answer keeps the first request's."""
    if response.mimetype == PROBLEM_JSON:
        body = parse(response.get_data())
        if "instance" not in body:
            body["instance"] = request_id
            response.set_data(compact(body))
    return response


def stamped(response, request_id):
    """``response`` with its X-Request-ID header, and ``instance`` if it is a problem."""
    response.headers[REQUEST_ID_HEADER] = request_id
    return with_instance(response, request_id)


def answered(request, response, method, route, started_s, correlation_id, proxies):
    """What every answer gets: its X-Request-ID (and ``instance``), the traceparent of the
    trace it belongs to (a client quotes its trace id), its metrics and its access line."""
    stamped(response, correlation_id)
    response.headers[tracing.HEADER] = tracing.current_traceparent()
    duration_s = time.perf_counter() - started_s
    observe_request(method, route, response.status_code, duration_s)
    status = response.status_code
    tracing.finish(tracing.current_span(), "{} {}".format(method, route), "server", {
        "http.request.method": method, "http.route": route, "http.response.status_code": status,
        "paysys.request_id": correlation_id},
        error="HTTP {}".format(status) if status >= 500 else None)
    access_log.log_request(request, method, route, response.status_code, duration_s,
                           client_ip(request, proxies), correlation_id)
    return response


class ProblemWsgiApp(WsgiApp):
    """Nameko's WSGI app, but an unknown path (404) or method (405) is problem+json too,
    carries its X-Request-ID and traceparent, is counted and logged like any other
    answer."""

    def __init__(self, server):
        super().__init__(server)
        self.trusted_proxies = trusted_proxies(server.container.config)

    def __call__(self, environ, start_response):
        started_s = time.perf_counter()
        request = Request(environ, shallow=True)
        adapter = self.url_map.bind_to_environ(environ)
        try:
            provider, values = adapter.match()
        except HTTPException as exc:
            response = problem_response(
                exc.code, "not_found" if exc.code == 404 else "method_not_allowed",
                exc.description,
                headers=[(k, v) for k, v in exc.get_headers(environ) if k != "Content-Type"])
            method = request.method if request.method in KNOWN_METHODS else "OTHER"
            outer = tracing.enter(tracing.child_of(request.headers.get(tracing.HEADER)))
            try:
                answered(request, response, method, UNMATCHED_ROUTE, started_s,
                         request_id(request), self.trusted_proxies)
            finally:
                tracing.leave(outer)
            return response(environ, start_response)
        request.path_values = values
        return provider.handle_request(request)(environ, start_response)


class ProblemWebServer(WebServer):
    def start(self):
        """Nameko's start, with the listening socket made by ``listen``."""
        if not self._starting:
            self._starting = True
            self._sock = listen(self.bind_addr)
            self._sock.settimeout(None)  # as nameko does: kombu issue 838
            self._serv = self.get_wsgi_server(self._sock, self.get_wsgi_app())
            self._gt = self.container.spawn_managed_thread(self.run)

    def get_wsgi_app(self):
        return ProblemWsgiApp(self)

    def make_url_map(self):
        """Nameko's map, with the converter of the routes' path parameters."""
        url_map = Map(converters={"segment": SegmentConverter})
        for provider in self._providers:
            rule = provider.get_url_rule()
            rule.endpoint = provider
            url_map.add(rule)
        return url_map


class GatewayEndpoint(HttpRequestHandler):
    """``HttpRequestHandler`` for one route of ``gateway.routes``."""

    server = ProblemWebServer()

    def __init__(self, route, **kwargs):
        self.route = route
        self.trusted_proxies = frozenset()
        kwargs.setdefault("expected_exceptions", PaysysError)
        super().__init__(route.method, route.url_rule, **kwargs)

    def setup(self):
        super().setup()
        self.trusted_proxies = trusted_proxies(self.container.config)

    def handle_request(self, request):
        # The request's span: it continues the client's trace (a valid traceparent) or
        # starts one; the worker and everything it calls are its children.
        outer = tracing.enter(tracing.child_of(request.headers.get(tracing.HEADER)))
        try:
            return self._handle_request(request)
        finally:
            tracing.leave(outer)

    def _handle_request(self, request):
        started_s = time.perf_counter()
        request.shallow = False
        correlation_id = request_id(request)
        try:
            args, kwargs = self.get_entrypoint_parameters(request)
            self.check_signature(args, kwargs)
            done = Event()
            self.container.spawn_worker(
                self, args, kwargs,
                context_data={CORRELATION_ID_KEY: correlation_id,
                              tracing.TRACEPARENT_KEY: tracing.current_traceparent()},
                handle_result=partial(self.handle_result, done),
            )
            response = self.response_from_result(done.wait())
        except Exception as exc:  # noqa: BLE001 - every error becomes problem+json
            response = response_for_error(exc)
        answered(request, response, self.route.method, self.route.path, started_s,
                 correlation_id, self.trusted_proxies)
        duration_s = time.perf_counter() - started_s
        if self.route.moves_money:  # where a money request's time goes (make bench)
            work_counters.count(work_counters.MONEY_REQUESTS)
            work_counters.count(work_counters.MONEY_REQUEST_MS, duration_s * 1000)
        # /ready's 503 names its causes in the access line's status; each probe of an
        # outage is not a warning of its own.
        if response.status_code >= 500 and not self.route.operational:
            log.warning("%s %s answered %s", self.route.method, self.route.path,
                        response.status_code, extra={"fields": {
                            "correlation_id": correlation_id, "duration_ms": duration_s * 1000,
                            "detail": response.get_data(as_text=True)[:500]}})
        return response

    def response_from_result(self, result):
        if isinstance(result, Response):
            return result
        raise TypeError("gateway handlers return a werkzeug Response, got {!r}".format(result))


def listen(address):
    """The gateway's listening socket, with SO_REUSEPORT: every gateway process (replicas,
    config.yml) binds the one address and the kernel spreads new connections among them,
    so a client keeps one URL and a dead replica's share goes to the others. Said here
    rather than left to eventlet's default (which sets it too, for a fixed port)."""
    return eventlet.listen(address, reuse_port=True)
