"""The gateway's guard: what every route goes through before its handler runs.

In order, so that a client learns nothing it may not know:

1. the per-IP rate limit (the operations routes skip the whole guard);
2. the bearer token (401), then the per-user rate limit;
3. the route's roles (403), declared once per route in ``gateway.routes``;
4. the path ids (404), the query and the body (400 / 422);
5. the Idempotency-Key: required on every money-moving POST, honoured on the
   other POSTs that create something; a stored response is replayed. A route whose
   handler goes through the money desk leaves the claim of its key to the desk, which
   makes it with its whole batch's (gateway/desk.py); the answer is kept here.

Handlers get a ``Call`` of validated values and never see the raw request,
so a check cannot be forgotten on one route. Ownership (another's account
is a 404) is checked again by the service that owns the data.
"""
import logging
from dataclasses import dataclass, field

import eventlet

from nameko.extensions import DependencyProvider
from werkzeug.wrappers import Response

from gateway import access_log, idempotency, inputs
from gateway.http import GatewayEndpoint, response_for_error, with_instance
from gateway.metrics import rate_limit_skipped
from gateway.ratelimit import RateLimiter, limits_from_settings
from gateway.settings import GatewaySettings
from shared import faults, work_counters
from shared.coalesce import Coalescer
from shared.db import DatabaseClient
from shared.errors import Forbidden, PaysysError, Unauthorized
from shared.redis import redis_client
from shared.settings import settings_of
from shared.shared_settings import SharedSettings
from shared.tokens import VerifiedTokens, load_public_key

log = logging.getLogger(__name__)

STAFF_ROLES = frozenset({"admin", "auditor"})
# How often the idempotency writes the database missed are tried again.
DEFERRED_FLUSH_INTERVAL_S = 0.5


@dataclass(frozen=True)
class Principal:
    """The authenticated caller, from the access token's claims."""

    id: str
    roles: tuple

    @property
    def is_admin(self):
        return "admin" in self.roles

    @property
    def is_staff(self):
        """Admins and auditors read any account; everyone else only their own."""
        return bool(STAFF_ROLES & set(self.roles))


@dataclass
class Call:
    """One validated request, as handlers see it."""

    route: object
    user: Principal = None
    path: dict = field(default_factory=dict)
    query: dict = field(default_factory=dict)
    body: dict = field(default_factory=dict)
    client_ip: str = ""
    idempotency_key: str = None
    claim: object = None  # gateway.idempotency.Claim of the key, on a keyed request
    request_id: str = None  # the X-Request-ID the request is logged under


def authenticate(tokens, request):
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Send the header Authorization: Bearer <access_token>.")
    claims = tokens.claims(token.strip())
    return Principal(claims["sub"], tuple(claims.get("roles") or ()))


def authorize(route, user):
    if route.roles and not set(route.roles) & set(user.roles):
        raise Forbidden("This operation needs the role {}.".format(" or ".join(route.roles)))


class GuardAccess:
    def __init__(self, provider):
        self.provider = provider

    def ping_redis(self):
        """/ready's Redis check, on the client rate limiting uses (its short timeout too)."""
        return self.provider.redis.ping()

    def handle(self, route, handler, service, request, path_values, claimed_at_desk=False):
        provider = self.provider
        if route.operational:  # path values as they are: no ids here (/problems/<code>)
            return handler(service, Call(route, path=dict(path_values)))
        ip = inputs.client_ip(request, provider.trusted_proxies)
        provider.rate_checks.call(("ip", ip))
        user = None
        if route.auth:
            user = authenticate(provider.tokens, request)
            access_log.note_user(request, user.id)
            provider.rate_checks.call(("user", user.id))
            authorize(route, user)
        call = Call(route, user, inputs.load_path(route, path_values),
                    inputs.load_query(route, request), inputs.load_body(route, request), ip,
                    request_id=service.correlation_id)
        key = None
        if route.moves_money or route.idempotent:
            key = idempotency.parse_key(request.headers.get(idempotency.HEADER),
                                        required=route.moves_money)
        if key is None:
            return handler(service, call)
        call.idempotency_key = key
        return self._once(route, handler, service, request, call, key, claimed_at_desk)

    def _once(self, route, handler, service, request, call, key, claimed_at_desk):
        """The handler's answer, kept under ``key``; or the answer kept there, replayed.
        ``claimed_at_desk``: the money desk claims the key with its batch's (the handler
        hands it ``call.claim``), else it is claimed here first."""
        keys = self.provider.idempotency
        user_id = call.user.id
        call.claim = idempotency.Claim(idempotency.Begin(
            user_id, key, idempotency.fingerprint(route.operation_id, request.path, call.body)))
        if not claimed_at_desk:
            replay = self._claim(call.claim)
            if replay is not None:
                return replay
        try:
            response = handler(service, call)
        except idempotency.Replay as replay:
            return _replayed(replay.stored)
        except idempotency.ClaimRefused as refused:  # in flight or another's: nothing kept
            return response_for_error(refused.error)
        except PaysysError as exc:
            response = response_for_error(exc)  # a 4xx answer is the answer, replayed too
        except BaseException:
            if call.claim.lease is not None:
                keys.finish(idempotency.Finish(user_id, key, call.claim.lease.token, 500))
            raise
        # Stored as this request answered it: a replay keeps its ``instance``.
        response = with_instance(response, call.request_id)
        if call.claim.lease is None:
            # The handler answered before its desk claimed the key (a check of its own
            # refused the request): claimed now, so the answer is kept as any other is;
            # a 5xx is never kept, so it needs no claim.
            if response.status_code >= 500:
                return response
            replay = self._claim(call.claim)
            if replay is not None:
                return replay
        if faults.armed:  # test-only (shared/faults.py): an answer that outlives its lease
            faults.answering(service.name, key)
        keys.finish(idempotency.Finish(user_id, key, call.claim.lease.token,
                                       response.status_code, response.get_data(as_text=True),
                                       dict(response.headers)))
        return response

    def _claim(self, claim):
        """Claim ``claim``'s key here: None once its lease is held, else the answer kept
        under the key, replayed; raises the key's refusal (409, 422)."""
        begun = self.provider.idempotency.begin(claim.begin)
        if isinstance(begun, idempotency.StoredResponse):
            return _replayed(begun)
        claim.lease = begun
        return None


def _replayed(stored):
    """The answer kept under a key, replayed (``Idempotent-Replayed: true``)."""
    response = Response(stored.body, status=stored.status, headers=stored.headers)
    response.headers[idempotency.REPLAYED_HEADER] = "true"
    return response


class IdempotencyKeys:
    """The Idempotency-Key store as the requests of one gateway process use it: the
    requests in flight together share one database transaction to begin and one to
    finish (shared/coalesce.py). An answer the database could not take (it is away) is
    written in the background once it is back (``DeferredWrites``)."""

    def __init__(self, store, deferred, spawn, max_batch, lanes):
        self.store = store
        self.deferred = deferred
        self.begins = Coalescer(store.begin_many, max_batch, lanes, spawn, "idempotency begin",
                                observe=work_counters.stage_observer("idempotency_claim"))
        self.finishes = Coalescer(self._finish_many, max_batch, lanes, spawn,
                                  "idempotency finish",
                                  observe=work_counters.stage_observer("idempotency_answer"))

    def start(self):
        self.begins.start()
        self.finishes.start()

    def begin(self, begin):
        return self.begins.call(begin)

    def finish(self, finish):
        try:
            self.finishes.call(finish)
        except Exception as exc:  # noqa: BLE001 - the work is done; retried in the background
            log.warning("could not record the outcome of Idempotency-Key %r (%s); retrying in "
                        "the background", finish.key, exc)
            self.deferred.add(lambda: self.store.finish_many([finish]))

    def _finish_many(self, finishes):
        self.store.finish_many(finishes)
        return [None] * len(finishes)


class Guard(DependencyProvider):
    """Holds what the guard needs for the life of the process: the public key that
    verifies access tokens, the rate limiter and the Idempotency-Key store."""

    db = DatabaseClient(schema="gateway")

    def setup(self):
        shared = settings_of(self.container, SharedSettings)
        settings = settings_of(self.container, GatewaySettings)
        self.tokens = VerifiedTokens(load_public_key(self.container.config))
        self.trusted_proxies = frozenset(settings.gateway.trusted_proxies)
        limits = settings.rate_limits
        # The gateway's one Redis client: /ready pings it too (``GuardAccess.ping_redis``).
        self.redis = redis_client(shared.redis.url, limits.redis_timeout_s)
        self.limiter = RateLimiter(self.redis, limits_from_settings(limits),
                                   on_skip=lambda scope: rate_limit_skipped.labels(scope).inc())
        max_batch = settings.gateway.coalesce_max_batch
        lanes = settings.gateway.coalesce_lanes
        # The checks of the requests in flight together share one Redis round trip.
        self.rate_checks = Coalescer(self.limiter.check_many, max_batch, lanes,
                                     self.container.spawn_managed_thread, "rate limits",
                                     observe=work_counters.stage_observer("rate_limits"))
        self.deferred = idempotency.DeferredWrites(settings.idempotency.lease_s)
        store = idempotency.IdempotencyStore.configured(self.db.access(), settings.idempotency)
        self.idempotency = IdempotencyKeys(store, self.deferred,
                                           self.container.spawn_managed_thread,
                                           max_batch=max_batch, lanes=lanes)
        self._stopping = False

    def start(self):
        self.rate_checks.start()
        self.idempotency.start()
        self.container.spawn_managed_thread(self._flush_deferred)

    def _flush_deferred(self):
        while not self._stopping:
            eventlet.sleep(DEFERRED_FLUSH_INTERVAL_S)
            if self.deferred.pending:
                self.deferred.flush()

    def stop(self):
        self._stopping = True
        self.redis.close()

    def kill(self):
        self.stop()

    def get_dependency(self, worker_ctx):
        return GuardAccess(self)


def guarded(route, handler, claimed_at_desk=False):
    """The entrypoint's method: runs the guard, then ``handler(service, call)``.

    The signature is the one Nameko's HTTP entrypoint calls, ``(request, **path)``.
    """
    def entry(self, request, **path_values):
        return self.guard.handle(route, handler, self, request, path_values, claimed_at_desk)

    entry.__name__ = handler.__name__
    entry.__doc__ = handler.__doc__
    return entry


def endpoint(route, claimed_at_desk=False):
    """Declares the handler of ``route``: ``@endpoint(BY_OPERATION["get_account"])``.
    ``claimed_at_desk``: the handler hands its ``call.claim`` to the money desk, which
    claims the Idempotency-Key with its batch's (gateway/desk.py)."""
    def decorate(handler):
        return GatewayEndpoint.decorator(route)(guarded(route, handler, claimed_at_desk))

    return decorate
