"""The gateway's settings: its HTTP server, the rate limits and the Idempotency-Keys."""
from pydantic import Field, field_validator, model_validator

from shared.settings import (
    CommaList, NonNegativeInt, PositiveFloat, PositiveInt, Section, ServiceSettings, setting)


class GatewaySection(Section):
    public_url: str = setting("The gateway's URL as clients reach it (the OpenAPI servers "
                              "entry, `paysys` commands)", pattern=r"^https?://")
    max_workers: PositiveInt = setting(
        "HTTP requests served at once by a gateway process (they mostly wait on shared "
        "batches, so many make large batches); beyond this, requests queue")
    readiness_timeout_ms: PositiveInt = setting("/ready gives each dependency this long")
    readiness_cache_ms: NonNegativeInt = setting(
        "/ready answers every probe within this long of a round from that round (a probe "
        "storm costs the dependencies one round per interval)")
    coalesce_max_batch: PositiveInt = setting(
        "Requests in flight together share one Idempotency-Key statement and one submit "
        "to transactions, up to this many")
    coalesce_lanes: PositiveInt = setting("Batches that run side by side (see README, "
                                          "Benchmarks: one lane is cheaper on two cores)")
    trusted_proxies: CommaList = setting(
        "Load balancers (comma-separated addresses) whose X-Forwarded-For is believed for "
        "the per-IP rate limit; empty: the peer is the client")

    api_metrics: bool = setting(
        "GET /metrics on the API port (the contract has it); production switches it off and "
        "scrapes the gateway's metrics port (then it is a 404)")

    @property
    def readiness_timeout_s(self):
        return self.readiness_timeout_ms / 1000

    @property
    def readiness_cache_s(self):
        return self.readiness_cache_ms / 1000


class RateLimitsSection(Section):
    user_per_s: PositiveFloat = setting("Average requests per second a user may make")
    user_burst: NonNegativeInt = setting("Requests a user may make above the average at once")
    ip_per_s: PositiveFloat = setting("Average requests per second a client IP may make")
    ip_burst: NonNegativeInt = setting(
        "Requests a client IP may make above the average at once")
    redis_timeout_ms: PositiveInt = setting(
        "A rate-limit check Redis has not answered by then lets the request through "
        "(fails open)")

    @property
    def redis_timeout_s(self):
        return self.redis_timeout_ms / 1000


class IdempotencySection(Section):
    ttl_s: PositiveInt = setting("An Idempotency-Key answers replays for this long after "
                                 "its first use; then it may be used afresh")
    lease_s: PositiveInt = setting("A request holds its key this long; if its gateway dies, "
                                   "a retry may take over after")

    @model_validator(mode="after")
    def _lease_within_ttl(self):
        # A key forgotten while its request may still hold it would answer two requests.
        if self.lease_s >= self.ttl_s:
            raise ValueError("idempotency.lease_s ({}) must be shorter than ttl_s ({})".format(
                self.lease_s, self.ttl_s))
        return self


class GatewaySettings(ServiceSettings):
    web_server_address: str = Field(
        alias="WEB_SERVER_ADDRESS", description="host:port the gateway's HTTP server listens on")
    gateway: GatewaySection
    rate_limits: RateLimitsSection
    idempotency: IdempotencySection

    @field_validator("web_server_address")
    @classmethod
    def _host_and_port(cls, value):
        host, _, port = str(value).rpartition(":")
        if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError("must be host:port with a port in 1-65535")
        return value

    @property
    def own_max_workers(self):
        return self.gateway.max_workers
